// SPDX-License-Identifier: MIT
// The programs under `mpirun -np N`: MPI starts only when a launcher started the process (so a
// plain run never touches MPI), each rank takes its share of the cores, rank 0 alone prints and
// writes files, and an error on any rank ends the whole job with its message. Built without MPI,
// a program started by a launcher refuses to run N copies that would overwrite each other.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "ddpm/core/communicator.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef DDPM_EXAMPLES_MPI
#include "ddpm/dist/mpi.hpp"
#endif

namespace ddpm_examples {

/// The ranks of this program's run (one process unless started by mpirun with MPI built in).
inline ddpm::Communicator*& world_pointer() {
  static ddpm::Communicator* world = &ddpm::single_process();
  return world;
}
/// \copydoc world_pointer
inline ddpm::Communicator& world() { return *world_pointer(); }
/// Whether this process writes the run's files and prints (rank 0).
inline bool writes_files() { return world().rank() == 0; }

/// Throws unless `distributed` or the run is one process: `command` runs on one process only.
inline void refuse_ranks_unless(bool distributed, const std::string& command) {
  if (distributed || world().size() == 1) return;
  throw std::invalid_argument("ddpm: " + command + " runs on one process, not " +
                              std::to_string(world().size()) +
                              " MPI ranks (train and sample use them); start it without mpirun");
}

/// The number of processes a launcher (Open MPI, MPICH/Hydra, PMIx) says the job has on this
/// machine and in all, from its environment; 1 and 1 without one.
struct LaunchedJob {
  int local_size = 1;
  int world_size = 1;

  static LaunchedJob from_environment() {
    const auto number = [](std::initializer_list<const char*> names) {
      for (const char* name : names) {
        if (const char* text = std::getenv(name)) return std::max(1, std::atoi(text));
      }
      return 0;
    };
    LaunchedJob job;
    job.world_size = std::max(1, number({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"}));
    job.local_size = std::max(1, number({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}));
    return job;
  }
};

/// For a program that runs on one process only, first thing in main(): false, after saying why on
/// the error stream, when a launcher started several copies of it (they would overwrite each
/// other's files).
inline bool started_as_one_process(const std::string& program) {
  const int copies = LaunchedJob::from_environment().world_size;
  if (copies == 1) return true;
  std::fprintf(stderr,
               "%s: runs on one process, not %d MPI ranks (only ddpm-toy2d and ddpm-images "
               "train and sample use them); start it without mpirun\n",
               program.c_str(), copies);
  return false;
}

/// Held by main(): starts MPI under a launcher, gives each rank its share of the cores, silences
/// the output of ranks other than 0 (their errors still reach the terminal through fail()).
class Distributed {
 public:
  Distributed(int& argc, char**& argv) {
    const LaunchedJob job = LaunchedJob::from_environment();
    if (job.world_size == 1) return;
#ifdef DDPM_EXAMPLES_MPI
    session_ = std::make_unique<ddpm::dist::MpiSession>(argc, argv);
    communicator_ = std::make_unique<ddpm::dist::MpiCommunicator>();
    world_pointer() = communicator_.get();
#ifdef _OPENMP
    // The cores of this machine shared among its ranks (--threads, parsed later, overrides it).
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    omp_set_num_threads(std::max(1, static_cast<int>(cores) / job.local_size));
#endif
    if (world().rank() != 0) {
      error_fd_ = dup(STDERR_FILENO);
      if (std::freopen("/dev/null", "w", stdout) == nullptr ||
          std::freopen("/dev/null", "w", stderr) == nullptr) {
        throw std::runtime_error("ddpm: cannot silence rank " + std::to_string(world().rank()));
      }
    }
#else
    (void)argc;
    (void)argv;
    throw std::runtime_error(
        "ddpm: this program was built without MPI, but a launcher started " +
        std::to_string(job.world_size) +
        " copies of it; install libopenmpi-dev and openmpi-bin, rebuild, and run mpirun again");
#endif
  }
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;
  ~Distributed() { world_pointer() = &ddpm::single_process(); }

  /// Reports an error that ends the program on this rank: rank 0's message as usual, another
  /// rank's on the terminal's error stream with its rank; with several ranks, ends them all
  /// (the others would wait in their next collective call forever). Returns the exit code.
  int fail(const std::string& message, int code) {
    const std::string line = message + "\n";
    if (world().rank() == 0 || error_fd_ < 0) {
      std::fputs(line.c_str(), stderr);
      std::fflush(stderr);
    } else {
      const std::string ranked = "[rank " + std::to_string(world().rank()) + "] " + line;
      [[maybe_unused]] const ssize_t written = write(error_fd_, ranked.data(), ranked.size());
    }
#ifdef DDPM_EXAMPLES_MPI
    if (world().size() > 1) ddpm::dist::MpiSession::abort(code);
#endif
    return code;
  }

 private:
#ifdef DDPM_EXAMPLES_MPI
  std::unique_ptr<ddpm::dist::MpiSession> session_;
  std::unique_ptr<ddpm::dist::MpiCommunicator> communicator_;
#endif
  int error_fd_ = -1;
};

/// First thing in a distributed program's main(): its ranks started (a plain run is one), or
/// empty after saying why on the error stream.
inline std::optional<Distributed> start_distributed(int& argc, char**& argv,
                                                    const std::string& program) {
  try {
    return std::optional<Distributed>(std::in_place, argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return std::nullopt;
  }
}

}  // namespace ddpm_examples
