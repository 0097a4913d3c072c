// SPDX-License-Identifier: MIT
// ddpm-samplers: every sampler x grid x number of network evaluations (NFE) measured against the
// data (MMD^2, sliced W1) beside ancestral-1000 and the data-vs-data floor, with the exact
// 8gaussians denoiser (no training) or a trained ddpm-toy2d checkpoint. Writes table.csv,
// samplers.png and a Markdown table on stdout (docs/samplers.md).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../common_dist.hpp"
#include "../common_options.hpp"
#include "../common_train.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/io/file.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/progress.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/nn/mlp.hpp"

namespace {

namespace fs = std::filesystem;
using ddpm::Batch;
using ddpm::GridKind;
using ddpm::Index;
using ddpm::SamplerKind;

struct CompareOptions {
  std::vector<int> nfe{5, 10, 20, 50};
  Index n = 2000;
  std::string checkpoint;  // empty: the exact denoiser of the 8gaussians mixture
  bool raw_weights = false;
  std::vector<std::string> samplers;  // empty: every sampler
  int repeats = 1;                    // independent sample and reference sets per row, averaged
  int floor_pairs = 10;
  int picture_nfe = 10;
};

// The grids worth comparing per sampler: ddpm and ddim step between training timesteps (the
// improved-DDPM respacing and diffusers' three spacings); the solvers take continuous levels
// (Karras, log-SNR uniform) and diffusers' trailing spacing, which starts at T-1.
std::vector<GridKind> grids_for(SamplerKind kind) {
  if (ddpm::steps_on_schedule(kind)) {
    return {GridKind::evenly, GridKind::trailing, GridKind::leading, GridKind::linspace};
  }
  return {GridKind::karras, GridKind::exponential, GridKind::trailing};
}

// The most steps whose network evaluations fit in `nfe` (Heun: 2N - 1 <= nfe), at least 1.
int steps_within(ddpm::SamplerSpec spec, int nfe, int T) {
  int steps = 1;
  for (int n = 1; n <= nfe; ++n) {
    spec.steps = n;
    if (spec.network_evaluations(T) <= nfe && (n <= T || !ddpm::steps_on_schedule(spec.kind))) {
      steps = n;
    }
  }
  return steps;
}

// A denoiser that counts its calls, so the NFE column is measured, not assumed. It passes real
// timesteps on when the model takes them (continuous grids are then not rounded).
template <class M, class Real>
class Counted {
 public:
  explicit Counted(M& model) : model_(&model) {}
  void predict(const Batch<Real>& x_t, std::span<const int> t, Batch<Real>& out) {
    ++calls_;
    model_->predict(x_t, t, out);
  }
  void predict(const Batch<Real>& x_t, std::span<const double> t,
               Batch<Real>& out) requires ddpm::ContinuousTimeDenoiser<M, Real> {
    ++calls_;
    model_->predict(x_t, t, out);
  }
  [[nodiscard]] int calls() const noexcept { return calls_; }

 private:
  M* model_;
  int calls_ = 0;
};

// What the samples are compared with: draw(n, seed) gives n reference points in the data's units;
// draw(n, 2k) and draw(n, 2k + 1) are disjoint (for a data file: the two halves of one shuffle).
struct Reference {
  std::string name;  // "8gaussians (exact denoiser)", "8gaussians model step 15000", ...
  std::function<Batch<double>(Index, std::uint64_t)> draw;
  Index size = 0;  // points per reference set (n, or half a data file)
  ddpm::io::Frame frame = ddpm::io::Frame::square(4.5);
};

struct Row {
  std::string sampler, grid;
  int steps = 0, nfe = 0;
  double mmd2 = 0, sliced_w1 = 0, seconds = 0;
};

struct Floor {
  double mmd2 = 0, mmd2_sd = 0, sliced_w1 = 0, sliced_w1_sd = 0;
  int repeats = 1;  // a row's metrics are means over this many sets
  // Fresh data scored exactly as a sampler's row (against the same reference sets), so the
  // reference sets' own luck, shared by every row, cancels in the comparison.
  Row fresh;
  // Indistinguishable from the data at this size: each metric of the row at most 2 standard
  // errors of a difference of two rows, 2 sd sqrt(2 / repeats), above the fresh-data row's.
  [[nodiscard]] bool contains(const Row& r) const {
    const double k = 2.0 * std::sqrt(2.0 / static_cast<double>(repeats));
    return r.mmd2 <= fresh.mmd2 + k * mmd2_sd && r.sliced_w1 <= fresh.sliced_w1 + k * sliced_w1_sd;
  }
};

// The data-vs-data metrics over `pairs` independent pairs of disjoint reference sets: their mean
// and sample sd (the sd of one row's metrics at this size).
Floor data_floor(const Reference& ref, int pairs, std::uint64_t seed, int repeats) {
  std::vector<double> mmd, w1;
  for (int k = 0; k < pairs; ++k) {
    const std::uint64_t a = 2 * (seed + static_cast<std::uint64_t>(k));
    const Batch<double> x = ref.draw(ref.size, a), y = ref.draw(ref.size, a + 1);
    mmd.push_back(ddpm::eval::mmd2_rbf(x, y));
    w1.push_back(ddpm::eval::sliced_wasserstein1(x, y));
  }
  const auto mean_sd = [](const std::vector<double>& v) {
    double mean = 0, sq = 0;
    for (const double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (const double x : v) sq += (x - mean) * (x - mean);
    return std::pair{mean, v.size() > 1 ? std::sqrt(sq / static_cast<double>(v.size() - 1)) : 0.0};
  };
  Floor f;
  f.repeats = repeats;
  std::tie(f.mmd2, f.mmd2_sd) = mean_sd(mmd);
  std::tie(f.sliced_w1, f.sliced_w1_sd) = mean_sd(w1);
  return f;
}

std::string fixed(double value, const char* format) {
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

void write_table(const fs::path& path, const std::vector<Row>& rows) {
  std::ostringstream csv;
  csv << "sampler,grid,steps,nfe,mmd2,sliced_w1,seconds\n";
  for (const Row& r : rows) {
    csv << r.sampler << ',' << r.grid << ',' << r.steps << ',' << r.nfe << ','
        << fixed(r.mmd2, "%.6e") << ',' << fixed(r.sliced_w1, "%.6e") << ','
        << fixed(r.seconds, "%.4f") << '\n';
  }
  ddpm::io::write_file_atomically(path, csv.str());
}

void print_markdown(const std::vector<Row>& rows, const Floor& floor, const Reference& ref,
                    Index n) {
  std::printf("\n%s: %lld samples per row against %lld reference points", ref.name.c_str(),
              static_cast<long long>(n), static_cast<long long>(ref.size));
  if (floor.repeats > 1) std::printf(", means over %d sets", floor.repeats);
  std::printf(
      ".\nFloor (data vs data, mean ± sd): MMD² %.2e ± %.1e, sliced W1 %.4f ± %.4f. "
      "✓: both metrics at most 2 sd √(2/%d) above the fresh-data row's.\n\n",
      floor.mmd2, floor.mmd2_sd, floor.sliced_w1, floor.sliced_w1_sd, floor.repeats);
  std::printf("| sampler | grid | steps | NFE | MMD² | sliced W1 | W1 / floor | s | |\n");
  std::printf("|---|---|--:|--:|--:|--:|--:|--:|:-:|\n");
  std::vector<Row> all{floor.fresh};
  all.insert(all.end(), rows.begin(), rows.end());
  for (const Row& r : all) {
    std::printf("| %s | %s | %d | %d | %.2e | %.4f | %.2f | %.3f | %s |\n", r.sampler.c_str(),
                r.grid.c_str(), r.steps, r.nfe, r.mmd2, r.sliced_w1, r.sliced_w1 / floor.sliced_w1,
                r.seconds, floor.contains(r) ? "✓" : "");
  }
}

// Runs every configuration over `model` and writes DIR/table.csv and DIR/samplers.png.
// `to_data` maps the model's samples to the data's units.
template <class Real, class M>
int compare(M& model, const ddpm::GaussianDiffusion<Real>& diffusion,
            const std::function<Batch<double>(const Batch<Real>&)>& to_data, const Reference& ref,
            const CompareOptions& options, const ddpm_examples::CommonOptions& common) {
  if constexpr (requires { model.set_training(false); }) model.set_training(false);
  const int T = diffusion.num_timesteps();
  ddpm::detail::require(
      std::find(options.nfe.begin(), options.nfe.end(), options.picture_nfe) != options.nfe.end(),
      "--picture-nfe", options.picture_nfe, "one of the --nfe budgets");
  std::vector<SamplerKind> kinds;
  for (const auto& [kind, name] : ddpm::EnumTable<SamplerKind>::names) {
    if (options.samplers.empty() || std::find(options.samplers.begin(), options.samplers.end(),
                                              name) != options.samplers.end()) {
      kinds.push_back(kind);
    }
  }
  struct Job {
    ddpm::SamplerSpec spec;
    int nfe_budget;
  };
  std::vector<Job> jobs{{{.kind = SamplerKind::ancestral, .steps = T}, T}};
  for (const int nfe : options.nfe) {
    for (const SamplerKind kind : kinds) {
      for (const GridKind grid : grids_for(kind)) {
        ddpm::SamplerSpec spec{.kind = kind, .grid = grid};
        spec.steps = steps_within(spec, nfe, T);
        jobs.push_back({spec, nfe});
      }
    }
  }
  // Repeat r: samples first_sample = r n of one rng (the same x_T and noise for every row) against
  // reference set r (the same for every row).
  const ddpm::CounterRng rng(common.seed);
  std::vector<Batch<double>> data;
  for (int r = 0; r < options.repeats; ++r) {
    data.push_back(ref.draw(ref.size, 2 * (common.seed + 1 + static_cast<std::uint64_t>(r))));
  }
  std::vector<Row> rows;
  std::map<SamplerKind, Batch<double>> pictured;  // each sampler at picture_nfe, default grid
  Batch<double> reference_samples;
  ddpm::io::ProgressBar progress(static_cast<std::int64_t>(jobs.size()), "compare", std::cerr,
                                 {.unit = "run"});
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    const ddpm::SamplerSpec& spec = jobs[j].spec;
    Row row{std::string(ddpm::to_string(spec.kind)), std::string(ddpm::to_string(spec.grid_kind())),
            spec.step_count(T)};
    Batch<double> samples;
    for (int r = 0; r < options.repeats; ++r) {
      Counted<M, Real> counted(model);
      const auto start = std::chrono::steady_clock::now();
      const Batch<Real> x = ddpm::sample(spec, diffusion, counted, options.n, 2, rng,
                                         static_cast<std::uint32_t>(r * options.n));
      row.seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
          options.repeats;
      ddpm::detail::require(counted.calls() == spec.network_evaluations(T), "network evaluations",
                            counted.calls(),
                            "the count SamplerSpec::network_evaluations promises (" +
                                std::to_string(spec.network_evaluations(T)) + ")");
      row.nfe = counted.calls();
      const Batch<double> in_data_units = to_data(x);
      const auto k = static_cast<std::size_t>(r);
      row.mmd2 += ddpm::eval::mmd2_rbf(in_data_units, data[k]) / options.repeats;
      row.sliced_w1 += ddpm::eval::sliced_wasserstein1(in_data_units, data[k]) / options.repeats;
      if (r == 0) samples = in_data_units;
    }
    rows.push_back(row);
    if (j == 0) reference_samples = samples;
    if (j > 0 && jobs[j].nfe_budget == options.picture_nfe &&
        spec.grid_kind() == ddpm::default_grid(spec.kind)) {
      pictured[spec.kind] = samples;
    }
    progress.update(static_cast<std::int64_t>(j + 1));
  }
  progress.finish();
  const auto floor_start = std::chrono::steady_clock::now();
  Floor floor = data_floor(ref, options.floor_pairs, common.seed + 1000, options.repeats);
  const double floor_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - floor_start).count();
  floor.fresh = {"data", "fresh", 0, 0};
  for (int r = 0; r < options.repeats; ++r) {
    // The other half of reference set r's seed pair: disjoint from it (also for a data file).
    const Batch<double> fresh =
        ref.draw(ref.size, 2 * (common.seed + 1 + static_cast<std::uint64_t>(r)) + 1);
    const auto k = static_cast<std::size_t>(r);
    floor.fresh.mmd2 += ddpm::eval::mmd2_rbf(fresh, data[k]) / options.repeats;
    floor.fresh.sliced_w1 += ddpm::eval::sliced_wasserstein1(fresh, data[k]) / options.repeats;
  }

  const fs::path out(common.out);
  fs::create_directories(out);
  std::vector<Row> table{floor.fresh};
  table.insert(table.end(), rows.begin(), rows.end());
  table.push_back({"data", "floor", 0, 0, floor.mmd2, floor.sliced_w1, floor_seconds});
  table.push_back({"data", "floor-sd", 0, 0, floor.mmd2_sd, floor.sliced_w1_sd, 0.0});
  write_table(out / "table.csv", table);

  // The picture: data, ancestral-1000, then each sampler at picture_nfe on its default grid.
  std::vector<ddpm::io::Panel> panels{
      ddpm::io::make_panel(data.front(), "data", "", ref.frame),
      ddpm::io::make_panel(reference_samples, "ddpm, " + std::to_string(T) + " NFE", "evenly grid",
                           ref.frame)};
  for (const SamplerKind kind : kinds) {
    if (!pictured.contains(kind)) continue;
    ddpm::SamplerSpec spec{.kind = kind};
    spec.steps = steps_within(spec, options.picture_nfe, T);
    panels.push_back(ddpm::io::make_panel(pictured[kind],
                                          std::string(ddpm::to_string(kind)) + ", " +
                                              std::to_string(spec.network_evaluations(T)) + " NFE",
                                          std::string(ddpm::to_string(spec.grid_kind())) + " grid",
                                          ref.frame));
  }
  ddpm::io::write_png(out / "samplers.png", ddpm::io::render_panels(panels, 4));

  print_markdown(rows, floor, ref, options.n);
  std::printf("\nwrote table.csv and samplers.png in %s\n", out.string().c_str());
  return 0;
}

// The exact denoiser of the 8gaussians mixture over the linear T = 1000 schedule; the reference
// sets are fresh draws of the mixture.
int compare_exact(const CompareOptions& options, const ddpm_examples::CommonOptions& common) {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  ddpm::GaussianMixtureDenoiser<double> model(ddpm::eight_gaussians_mixture(), schedule);
  const Reference ref{.name = "8gaussians, exact denoiser (linear schedule, T = 1000)",
                      .draw =
                          [](Index n, std::uint64_t seed) {
                            return ddpm::data::sample_toy2d<double>(
                                ddpm::data::ToyDataset::eight_gaussians, n, seed);
                          },
                      .size = options.n};
  return compare<double>(
      model, ddpm::GaussianDiffusion<double>(schedule), [](const Batch<double>& x) { return x; },
      ref, options, common);
}

// A ddpm-toy2d checkpoint (its EMA weights unless --raw-weights): samples come back in the data's
// units; the reference sets are fresh draws of a built-in distribution, or disjoint halves of the
// training file.
int compare_checkpoint(const CompareOptions& options, const ddpm_examples::CommonOptions& common) {
  ddpm_examples::SampleArgs args;
  args.checkpoint = options.checkpoint;
  args.raw_weights = options.raw_weights;
  auto [run, model] = ddpm_examples::load_trained<ddpm::nn::Mlp<float>, ddpm::nn::MlpConfig>(args);
  ddpm::detail::require(!run.diffusion.learned_variance(), "--checkpoint", options.checkpoint,
                        "a model with a fixed variance (the solvers use no learned variance)");
  Reference ref;
  ref.name = run.data.name + " model (" + options.checkpoint + ")";
  if (run.data.frame.size() == 4) {
    const std::vector<double>& f = run.data.frame;
    ref.frame = {f[0], f[1], f[2], f[3]};
  }
  if (run.data.from_file()) {
    auto rows = std::make_shared<Batch<double>>(ddpm::data::load_points(run.data.path));
    ref.size = std::min(options.n, rows->rows() / 2);
    ddpm::detail::require(ref.size >= 2, "--checkpoint", run.data.path,
                          "a data file of at least 4 points (two reference halves)");
    // Seeds 2k and 2k + 1 take the two halves of shuffle k.
    ref.draw = [rows](Index n, std::uint64_t seed) {
      const std::vector<Index> order = ddpm::data::shuffled_rows(rows->rows(), seed / 2);
      return ddpm::data::pick_rows(*rows, order, seed % 2 == 0 ? 0 : n, n);
    };
  } else {
    const auto toy = ddpm::parse_enum<ddpm::data::ToyDataset>(run.data.name);
    ref.size = options.n;
    ref.draw = [toy](Index n, std::uint64_t seed) {
      return ddpm::data::sample_toy2d<double>(toy, n, seed);
    };
  }
  const ddpm::data::Standardization units{run.data.mean, run.data.scale};
  return compare<float>(
      model, run.diffusion.make<float>(),
      [&units](const Batch<float>& x) { return units.to_data(x).cast<double>().eval(); }, ref,
      options, common);
}

}  // namespace

int main(int argc, char** argv) {
  if (!ddpm_examples::started_as_one_process("ddpm-samplers")) return 1;
  CLI::App app{
      "ddpm-samplers: every sampler and grid at a few numbers of network evaluations, measured "
      "against the data beside ancestral-1000 and the data-vs-data floor."};
  app.require_subcommand(1);
  CompareOptions options;
  ddpm_examples::CommonOptions common;
  common.out = "out/samplers";
  CLI::App* compare_cmd = app.add_subcommand(
      "compare",
      "sample with every sampler x grid x NFE; writes table.csv (sampler, grid, steps, nfe, "
      "mmd2, sliced_w1, seconds) and samplers.png, and prints a Markdown table");
  compare_cmd
      ->add_option("--nfe", options.nfe,
                   "network-evaluation budgets, e.g. 5,10,20,50 (Heun takes N steps with "
                   "2N - 1 <= NFE)")
      ->delimiter(',')
      ->check(ddpm_examples::integer_range(1, 1000))
      ->capture_default_str();
  compare_cmd->add_option("--n", options.n, "samples per row (and reference points)")
      ->check(ddpm_examples::integer_range(2, 1000000))
      ->capture_default_str();
  compare_cmd->add_option("--checkpoint", options.checkpoint,
                          "a ddpm-toy2d model.ckpt instead of the exact 8gaussians denoiser");
  compare_cmd->add_flag("--raw-weights", options.raw_weights,
                        "with --checkpoint: the trained weights, not their EMA");
  compare_cmd
      ->add_option("--samplers", options.samplers,
                   "only these samplers, e.g. ddim,dpm++2m (default: all; ancestral-1000 always)")
      ->delimiter(',')
      ->check(CLI::IsMember(ddpm::enum_names<SamplerKind>()));
  compare_cmd
      ->add_option("--repeats", options.repeats,
                   "independent sample and reference sets per row; the table shows the means")
      ->check(ddpm_examples::integer_range(1, 100))
      ->capture_default_str();
  compare_cmd
      ->add_option("--floor-pairs", options.floor_pairs,
                   "independent data-vs-data pairs behind the floor's mean and sd")
      ->check(ddpm_examples::integer_range(2, 100))
      ->capture_default_str();
  compare_cmd
      ->add_option("--picture-nfe", options.picture_nfe,
                   "the NFE budget samplers.png shows (one of --nfe)")
      ->check(ddpm_examples::integer_range(1, 1000))
      ->capture_default_str();
  ddpm_examples::add_common_options(*compare_cmd, common);
  CLI11_PARSE(app, argc, argv);
  try {
    // Before any sampling: a missing checkpoint or an unwritable --out is refused at once.
    if (!options.checkpoint.empty()) {
      ddpm_examples::check_input_file("--checkpoint", options.checkpoint,
                                      "an existing ddpm-toy2d checkpoint file");
    }
    ddpm_examples::check_output_folder(common.out);
    if (options.checkpoint.empty()) return compare_exact(options, common);
    return compare_checkpoint(options, common);
  } catch (const std::exception& e) {
    std::cerr << "ddpm-samplers: " << e.what() << "\n";
    return 1;
  }
}
