// SPDX-License-Identifier: MIT
// ddpm::Communicator over MPI: data-parallel training and sampling across processes and machines
// (`mpirun -np N program ...`). Optional: only this header includes <mpi.h>, and a program that
// includes it links MPI (CMake: the target ddpm::dist, defined when MPI is found).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>

#include "ddpm/core/communicator.hpp"

namespace ddpm::dist {

/// Throws std::runtime_error naming the MPI call unless it returned MPI_SUCCESS.
inline void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(std::string("ddpm: ") + call + " failed: " + std::string(text, length));
}

/// MPI_Init on construction (unless MPI is already initialized), MPI_Finalize on destruction if
/// it initialized MPI. One per program, for main() to hold.
class MpiSession {
 public:
  /// Initializes MPI with the program's arguments.
  MpiSession(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      check_mpi(MPI_Init(&argc, &argv), "MPI_Init");
      owner_ = true;
    }
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owner_ && !finalized) MPI_Finalize();
  }

  /// Ends every process of the job with `code`: after an error on one rank, the others would
  /// wait forever in their next collective call.
  static void abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

 private:
  bool owner_ = false;
};

/// The processes of an MPI communicator (MPI_COMM_WORLD by default) as a ddpm::Communicator.
/// The reductions are MPI_Allreduce on 64-bit integers (MPI_SUM: exact, so independent of the
/// order MPI combines the ranks in) and doubles (MPI_MAX), in pieces of at most INT_MAX elements.
class MpiCommunicator final : public Communicator {
 public:
  /// The processes of `comm`; MPI must be initialized (MpiSession).
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  /// This process's rank in the communicator.
  [[nodiscard]] int rank() const override { return rank_; }
  /// The number of processes in the communicator.
  [[nodiscard]] int size() const override { return size_; }
  /// MPI_Allreduce(MPI_SUM) on MPI_INT64_T, in place.
  void all_reduce_sum(std::span<std::int64_t> values) override {
    reduce(values.data(), values.size(), MPI_INT64_T, MPI_SUM);
  }
  /// MPI_Allreduce(MPI_MAX) on MPI_DOUBLE, in place.
  void all_reduce_max(std::span<double> values) override {
    reduce(values.data(), values.size(), MPI_DOUBLE, MPI_MAX);
  }

 private:
  void reduce(void* data, std::size_t count, MPI_Datatype type, MPI_Op op) {
    int type_size = 0;
    MPI_Type_size(type, &type_size);
    auto* bytes = static_cast<char*>(data);
    for (std::size_t done = 0; done < count;) {
      const std::size_t piece = std::min<std::size_t>(count - done, INT_MAX);
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, bytes + done * static_cast<std::size_t>(type_size),
                              static_cast<int>(piece), type, op, comm_),
                "MPI_Allreduce");
      done += piece;
    }
  }

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace ddpm::dist
