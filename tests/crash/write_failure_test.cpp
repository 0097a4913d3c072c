// SPDX-License-Identifier: MIT
// Tests of failing writes: a full disk (RLIMIT_FSIZE) during a file, a checkpoint or a training
// run leaves the previous file intact with a clear error, and the train commands' --out check.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "../../examples/common_train.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/trainer.hpp"
#include "support.hpp"

#if __has_include(<sys/resource.h>)
#include <sys/resource.h>
#define DDPM_TEST_HAS_RLIMIT 1
#endif

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

#ifdef DDPM_TEST_HAS_RLIMIT
/// Limits the size of files this process writes to `bytes` (RLIMIT_FSIZE, a full disk for
/// writes that cross it) with SIGXFSZ ignored, so a write fails with EFBIG instead of killing
/// the process; both are restored at scope exit.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    previous_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, previous_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*previous_)(int) = nullptr;
};
#endif

/// doctest::Contains of a std::string (it takes a doctest::String).
doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

ddpm::nn::MlpConfig tiny_mlp() {
  ddpm::nn::MlpConfig config;
  config.width = 16;
  config.depth = 1;
  config.embedding_dim = 8;
  config.seed = 1;
  return config;
}

}  // namespace

#ifdef DDPM_TEST_HAS_RLIMIT
TEST_CASE("a write that hits a full disk keeps the previous file and names the file and errno") {
  const ddpm::test::TempDir dir;
  const fs::path path = dir.path / "data.bin";
  const std::string old_bytes(1000, 'a');
  ddpm::io::write_file_atomically(path, old_bytes);
  {
    const FileSizeLimit limit(4096);
    // Bigger than the limit: part of it is written, then write() fails with EFBIG.
    CHECK_THROWS_WITH_AS(ddpm::io::write_file_atomically(path, std::string(10000, 'b')),
                         contains("cannot write file '" + path.string() + "': writing '" +
                                  path.string() + ".tmp' failed: File too large"),
                         ddpm::io::WriteError);
    // A file under the limit is written as usual.
    ddpm::io::write_file_atomically(dir.path / "small.bin", "ok");
  }
  CHECK(slurp(path) == old_bytes);  // the old file, whole
  CHECK_FALSE(fs::exists(dir.path / "data.bin.tmp"));
  CHECK(slurp(dir.path / "small.bin") == "ok");
  CHECK_FALSE(fs::exists(dir.path / "small.bin.tmp"));
  {
    const FileSizeLimit limit(4096);
    try {
      ddpm::io::write_file_atomically(path, std::string(10000, 'b'));
      FAIL("no exception");
    } catch (const std::runtime_error& e) {  // a WriteError is still a std::runtime_error
      CHECK(std::string(e.what()).find("the previous '" + path.string() + "' is unchanged") !=
            std::string::npos);
    }
    // Without a previous file the message says nothing about one.
    try {
      ddpm::io::write_file_atomically(dir.path / "new.bin", std::string(9000, 'c'));
      FAIL("no exception");
    } catch (const ddpm::io::WriteError& e) {
      CHECK(std::string(e.what()).find("previous") == std::string::npos);
    }
  }
  CHECK_FALSE(fs::exists(dir.path / "new.bin"));
  CHECK_FALSE(fs::exists(dir.path / "new.bin.tmp"));
}

TEST_CASE("a checkpoint that cannot be written leaves the previous one loadable") {
  const ddpm::test::TempDir dir;
  const fs::path path = dir.path / "model.ckpt";
  ddpm::train::Checkpoint old;
  old.set("step", "20");
  old.put<float>("w", std::vector<float>(100, 1.0f));
  old.save(path);
  ddpm::train::Checkpoint next;
  next.set("step", "40");
  next.put<float>("w", std::vector<float>(5000, 2.0f));  // 20 kB, over the limit
  {
    const FileSizeLimit limit(8192);
    CHECK_THROWS_WITH_AS(next.save(path), doctest::Contains("File too large"),
                         ddpm::io::WriteError);
  }
  const ddpm::train::Checkpoint kept = ddpm::train::Checkpoint::load(path);
  CHECK(kept.get("step") == "20");
  CHECK(kept.tensor("w").real.size() == 100);
  CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("a training run whose checkpoint hits a full disk stops with the step and the last one") {
  const ddpm::test::TempDir dir;
  const ddpm::GaussianDiffusion<float> diffusion(ddpm::NoiseSchedule::linear(50));
  ddpm::nn::Mlp<float> model(tiny_mlp());
  ddpm::train::Trainer<float, ddpm::nn::Mlp<float>> trainer(
      model, diffusion, {.batch_size = 16, .steps = 30, .ema_decay = 0.0, .seed = 2});
  const auto data = [](std::int64_t step, ddpm::Index n, ddpm::Batch<float>& out) {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::moons, n, 3, step * n);
  };
  using Run = ddpm::train::Trainer<float, ddpm::nn::Mlp<float>>::RunOptions;
  const Run run{.checkpoint = dir.path / "model.ckpt",
                .checkpoint_every = 10,
                .architecture = "tiny",
                .loss_csv = dir.path / "loss.csv",
                .label = "test"};
  // The checkpoint of step 10 fits under the limit, the one of step 20 (padded) does not.
  const auto annotate = [&](ddpm::train::Checkpoint& c) {
    c.set("pad", std::string(trainer.step_count() >= 20 ? 200000 : 0, 'x'));
  };
  {
    const FileSizeLimit limit(100000);
    CHECK_THROWS_WITH_AS(
        trainer.run(data, run, annotate),
        contains("model.ckpt.tmp' failed: File too large (over the file-size limit, "
                 "ulimit -f, or the file system's); the previous '" +
                 run.checkpoint.string() +
                 "' is unchanged; training stopped at step 20 (the last checkpoint "
                 "this run wrote is step 10)"),
        ddpm::io::WriteError);
  }
  CHECK(ddpm::train::Checkpoint::load(run.checkpoint).get("step") == "10");
  CHECK_FALSE(fs::exists(dir.path / "model.ckpt.tmp"));
}
#endif

TEST_CASE("a file that cannot be created names the file and the reason") {
  const ddpm::test::TempDir dir;
  CHECK_THROWS_WITH_AS(
      ddpm::io::write_file_atomically(dir.path / "missing" / "x.bin", "x"),
      contains("cannot write file '" + (dir.path / "missing" / "x.bin").string() +
               "': cannot create '" + (dir.path / "missing" / "x.bin.tmp").string() +
               "': No such file or directory"),
      ddpm::io::WriteError);
}

TEST_CASE("train's --out check refuses what cannot be written, before any work") {
  const ddpm::test::TempDir dir;
  const fs::path file = dir.write("plain_file", "not a folder");
  SUBCASE("a folder below a regular file cannot be created (even by root)") {
    CHECK_THROWS_WITH_AS(ddpm_examples::check_output_folder(file / "out"),
                         contains("invalid --out = '" + (file / "out").string() +
                                  "'; allowed: a folder that can be created and "
                                  "written (cannot create '" +
                                  (file / "out").string() + "': Not a directory)"),
                         ddpm::InvalidArgument);
  }
  SUBCASE("a file in place of the folder") {
    CHECK_THROWS_WITH_AS(ddpm_examples::check_output_folder(file),
                         contains("invalid --out = '" + file.string() + "'"),
                         ddpm::InvalidArgument);
    CHECK(slurp(file) == "not a folder");  // left alone
  }
  SUBCASE("a file system without room for the first checkpoint") {
    const std::uintmax_t huge = ddpm_examples::checkpoint_bytes_estimate(std::int64_t{1} << 50);
    CHECK_THROWS_WITH_AS(
        ddpm_examples::check_output_folder(dir.path / "big", huge),
        contains("bytes available; the first checkpoint needs about " + std::to_string(huge)),
        ddpm::InvalidArgument);
  }
  SUBCASE("a writable folder is created and left empty") {
    ddpm_examples::check_output_folder(dir.path / "a" / "b", 1 << 20);
    CHECK(fs::is_directory(dir.path / "a" / "b"));
    CHECK(fs::is_empty(dir.path / "a" / "b"));
  }
  // 4 arrays (weights, Adam m and v, EMA) of 8 bytes, and 1 MiB.
  CHECK(ddpm_examples::checkpoint_bytes_estimate(1000) == 32000 + (1u << 20));
}
