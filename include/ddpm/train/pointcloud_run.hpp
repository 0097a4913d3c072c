// SPDX-License-Identifier: MIT
// What a point-cloud program needs around Luo & Hu's model (nn::PointCloudModel): the network's
// checkpoint fields, the run's shapes (generated families or the user's clouds, split into
// training and held-out, normalized one way everywhere), the Trainer's data sources for the
// autoencoder and for the latent prior, and the shape codes the prior learns.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/data/points.hpp"
#include "ddpm/data/shapes3d.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/io/pointcloud.hpp"
#include "ddpm/nn/point_cloud_model.hpp"
#include "ddpm/train/run_config.hpp"

namespace ddpm::train {

/// nn::PointCloudModel: every field but the initialization seed.
template <>
struct ModelFields<nn::PointCloudModelConfig> {
  static constexpr std::string_view kind = "pointcloud";  ///< the checkpoint's model.kind
  /// Writes the configuration as model.* fields.
  static void write(FieldWriter& w, const nn::PointCloudModelConfig& c) {
    w.integer("model.latent", c.latent_dim);
    w.integer("model.points", c.points_per_shape);
    w.list("model.decoder", c.decoder_widths);
    w.list("model.encoder", c.encoder_widths);
    w.list("model.head", c.head_widths);
    w.boolean("model.residual", c.residual);
    w.real("model.kl_weight", c.kl_weight);
  }
  /// Reads the model.* fields back strictly.
  static nn::PointCloudModelConfig read(const FieldReader& r) {
    nn::PointCloudModelConfig c;
    c.latent_dim = r.integer<Index>("model.latent", 1, 1 << 16);
    c.points_per_shape = r.integer<Index>("model.points", 2, Index{1} << 24);
    c.decoder_widths = r.list<Index>("model.decoder");
    c.encoder_widths = r.list<Index>("model.encoder");
    c.head_widths = r.list<Index>("model.head");
    c.residual = r.boolean("model.residual");
    c.kl_weight = r.real("model.kl_weight");
    return c;
  }
};

/// The configuration of a point-cloud (PointCloudModel) run.
using PointCloudRun = RunConfig<nn::PointCloudModelConfig>;

/// The network of a point-cloud run, built for its diffusion's schedule (the decoder sees beta_t).
template <class Real>
[[nodiscard]] nn::PointCloudModel<Real> make_point_cloud_model(const PointCloudRun& run) {
  return nn::PointCloudModel<Real>(run.model, run.diffusion.schedule.base().betas());
}

/// The data.name of generated shapes: "shapes:" and the families, comma-separated.
[[nodiscard]] inline std::string shapes_data_name(std::span<const data::ShapeFamily> families) {
  std::string name = "shapes:";
  for (std::size_t i = 0; i < families.size(); ++i) {
    name += (i > 0 ? "," : "") + std::string(to_string(families[i]));
  }
  return name;
}

/// The shapes of a point-cloud run, every one normalized the same way in training, sampling and
/// evaluation: data::normalize_clouds (per shape, mean 0 and unit coordinate standard deviation,
/// Luo & Hu's "shape_unit"). Clouds are S·N x 3 batches, shape s in rows [s·N, (s+1)·N).
///
/// Generated shapes (data.name "shapes:<families>"): training shapes are data::sample_shapes
/// indices 0..S-1 (seed kShapeSeed), held-out shapes indices from kHeldOutFirst on, so there are as
/// many held-out shapes as asked for. The user's clouds (a folder or an S x N x 3 .npy): every
/// cloud is read, resampled to N points and normalized; a shuffle fixed by kShapeSeed puts
/// `held_out` of them aside.
template <class Real>
class PointClouds {
 public:
  /// The seed of the generated shapes and of the held-out shuffle.
  static constexpr std::uint64_t kShapeSeed = 2021;
  /// The index of the first generated held-out shape (far above any training index).
  static constexpr Index kHeldOutFirst = Index{1} << 31;

  /// `train_shapes` generated shapes of `families`, N = `points` each.
  static PointClouds synthetic(std::vector<data::ShapeFamily> families, Index train_shapes,
                               Index points) {
    ddpm::detail::require(!families.empty(), "shape families", "none", "at least one family");
    ddpm::detail::require(train_shapes >= 1 && train_shapes <= kHeldOutFirst, "training shapes",
                          train_shapes, "1..2^31");
    PointClouds p;
    p.families_ = std::move(families);
    p.points_ = points;
    p.train_ = data::sample_shapes<Real>(p.families_, train_shapes, points, kShapeSeed);
    p.config_ = {.name = shapes_data_name(p.families_),
                 .rows = train_shapes,
                 .fingerprint = data_fingerprint(p.train_)};
    return p;
  }

  /// The clouds of `path` (a folder of .xyz/.txt/.ply/.off files or one S x N x 3 .npy), `points`
  /// each; `held_out` of them (clamped to 1..S-1; 0: 10 %) kept for evaluation, recorded in
  /// data.name ("file:held_out=K").
  static PointClouds from_path(const std::string& path, Index points, Index held_out) {
    Batch<double> all = io::read_point_clouds(path, points, kShapeSeed);
    const Index count = all.rows() / points;
    if (count < 2) {
      throw FormatError("ddpm: '" + path + "' holds " + std::to_string(count) +
                        " cloud; at least 2 are needed (training and held-out)");
    }
    if (held_out == 0) held_out = (count + 9) / 10;
    held_out = std::clamp<Index>(held_out, 1, count - 1);
    data::normalize_clouds(all, points);
    const std::vector<Index> order = data::shuffled_rows(count, kShapeSeed);
    PointClouds p;
    p.points_ = points;
    p.train_ = gather(all, points, order, 0, count - held_out);
    p.held_out_ = gather(all, points, order, count - held_out, held_out);
    p.config_ = {.name = "file:held_out=" + std::to_string(held_out),
                 .path = path,
                 .rows = count,
                 .fingerprint = data_fingerprint(all)};
    return p;
  }

  /// The shapes a checkpoint's run was trained on, from its data.* fields (a file read again;
  /// a warning when it changed is the caller's).
  static PointClouds open(const DataConfig& config, Index points) {
    if (config.from_file()) {
      const std::string key = "file:held_out=";
      Index held_out = 0;
      if (config.name.rfind(key, 0) == 0) {
        const char* first = config.name.data() + key.size();
        const char* last = config.name.data() + config.name.size();
        const auto [end, error] = std::from_chars(first, last, held_out);
        if (error != std::errc() || end != last || held_out < 1) {
          throw FormatError("ddpm: data.name '" + config.name +
                            "': the held-out count is not a positive integer");
        }
      }
      return from_path(config.path, points, held_out);
    }
    const std::string prefix = "shapes:";
    if (config.name.rfind(prefix, 0) != 0) {
      throw FormatError("ddpm: data.name '" + config.name +
                        "' is neither generated shapes (shapes:<families>) nor a file");
    }
    std::vector<data::ShapeFamily> families;
    std::string rest = config.name.substr(prefix.size());
    for (std::size_t start = 0; start <= rest.size();) {
      const std::size_t comma = std::min(rest.find(',', start), rest.size());
      families.push_back(parse_enum<data::ShapeFamily>(rest.substr(start, comma - start)));
      start = comma + 1;
    }
    return synthetic(std::move(families), config.rows, points);
  }

  /// What the data are and how they were made or read.
  [[nodiscard]] const DataConfig& config() const noexcept { return config_; }
  /// N, the points per cloud.
  [[nodiscard]] Index points() const noexcept { return points_; }
  /// The training clouds, S·N x 3.
  [[nodiscard]] const Batch<Real>& train() const noexcept { return train_; }
  /// S, the number of training clouds.
  [[nodiscard]] Index train_count() const noexcept { return train_.rows() / points_; }
  /// True for generated shapes, false for the user's clouds.
  [[nodiscard]] bool generated() const noexcept { return !config_.from_file(); }
  /// How many held-out shapes there are (unbounded, up to 2^31, for generated shapes).
  [[nodiscard]] Index held_out_count() const noexcept {
    return generated() ? kHeldOutFirst : held_out_.rows() / points_;
  }

  /// Held-out shapes first..first+count-1.
  [[nodiscard]] Batch<Real> held_out(Index first, Index count) const {
    ddpm::detail::require(first >= 0 && count >= 0 && first + count <= held_out_count(),
                          "held-out shapes",
                          std::to_string(first) + ".." + std::to_string(first + count - 1),
                          "0.." + std::to_string(held_out_count() - 1));
    if (generated()) {
      return data::sample_shapes<Real>(families_, count, points_, kShapeSeed,
                                       kHeldOutFirst + first);
    }
    return held_out_.middleRows(first * points_, count * points_);
  }

  /// Generated shapes only: held-out shapes first..first+count-1 again, the same surfaces with
  /// other points on them (normalized by their own points), so reconstruction metrics have their
  /// floor: what two independent N-point samplings of one surface score.
  [[nodiscard]] Batch<Real> held_out_resampled(Index first, Index count) const {
    ddpm::detail::require(generated(), "resampled held-out shapes", config_.name,
                          "generated shapes (a file's clouds cannot be sampled again)");
    Batch<double> out(count * points_, 3);
    const auto n_families = static_cast<Index>(families_.size());
    for (Index s = 0; s < count; ++s) {
      const Index index = kHeldOutFirst + first + s;
      const data::Shape shape = data::random_shape(
          families_[static_cast<std::size_t>(index % n_families)], kShapeSeed, index);
      out.middleRows(s * points_, points_) =
          data::sample_surface(shape, points_, kShapeSeed + 1, index);
    }
    if (count > 0) data::normalize_clouds(out, points_);
    return out.template cast<Real>();
  }

 private:
  static Batch<Real> gather(const Batch<double>& all, Index points, const std::vector<Index>& order,
                            Index first, Index count) {
    Batch<Real> out(count * points, 3);
    for (Index s = 0; s < count; ++s) {
      out.middleRows(s * points, points) =
          all.middleRows(order[static_cast<std::size_t>(first + s)] * points, points)
              .template cast<Real>();
    }
    return out;
  }

  DataConfig config_;
  std::vector<data::ShapeFamily> families_;
  Index points_ = 0;
  Batch<Real> train_, held_out_;
};

/// The autoencoder's data source: n / M training shapes per step, drawn with replacement, each as
/// M of its N points drawn without replacement (a pure function of (seed, step), so a resumed run
/// sees the same batches). Training on M < N points per shape gives more shapes and timesteps per
/// step for the same cost; the decoder is per point, so it samples clouds of any size.
template <class Real>
struct ShapeBatches {
  const Batch<Real>* clouds;  ///< the training clouds, N points each
  Index cloud_points;         ///< N
  Index points;               ///< M <= N, the model's points_per_shape
  std::uint64_t seed;         ///< of the shape and point draws
  /// Fills out (n x 3) with batch `step`: n / M shapes of M points each.
  void operator()(std::int64_t step, Index n, Batch<Real>& out) const {
    ddpm::detail::require(n % points == 0, "batch rows", n,
                          "a multiple of the points per shape, " + std::to_string(points));
    ddpm::detail::require(points <= cloud_points, "training points per shape", points,
                          "at most the points of a cloud, " + std::to_string(cloud_points));
    const CounterRng rng(seed);
    const auto counter = static_cast<std::uint32_t>(step);
    const auto count = static_cast<std::uint64_t>(clouds->rows() / cloud_points);
    out.resize(n, 3);
    std::vector<Index> order(static_cast<std::size_t>(cloud_points));
    const bool subset = points < cloud_points;
    for (Index s = 0; s < n / points; ++s) {
      const auto sample = static_cast<std::uint32_t>(s);
      const auto shape = static_cast<Index>(rng.uniform_int(stream::data, sample, counter, count));
      // The first M of a partial Fisher-Yates shuffle of the N points (all N in order when M = N).
      for (Index i = 0; i < cloud_points; ++i) order[static_cast<std::size_t>(i)] = i;
      for (Index i = 0; subset && i < points; ++i) {
        const auto j = i + static_cast<Index>(rng.uniform(stream::augment, sample, counter,
                                                          static_cast<std::uint32_t>(i)) *
                                              static_cast<double>(cloud_points - i));
        std::swap(order[static_cast<std::size_t>(i)],
                  order[static_cast<std::size_t>(std::min(j, cloud_points - 1))]);
      }
      for (Index i = 0; i < points; ++i) {
        out.row(s * points + i) =
            clouds->row(shape * cloud_points + order[static_cast<std::size_t>(i)]);
      }
    }
  }
};

/// M evenly spread points (rows floor(k N / M)) of every N-point cloud of `clouds`: what the
/// encoder of a model trained on M points per shape sees of a larger cloud.
template <class Real>
[[nodiscard]] Batch<Real> even_subset(const Batch<Real>& clouds, Index cloud_points, Index points) {
  ddpm::detail::require(points >= 1 && points <= cloud_points, "points", points,
                        "1.." + std::to_string(cloud_points));
  const Index count = clouds.rows() / cloud_points;
  Batch<Real> out(count * points, 3);
  for (Index s = 0; s < count; ++s) {
    for (Index k = 0; k < points; ++k) {
      out.row(s * points + k) = clouds.row(s * cloud_points + k * cloud_points / points);
    }
  }
  return out;
}

/// A copy of `model` for clouds of `points` points per shape (the weights do not depend on it).
template <class Real>
[[nodiscard]] nn::PointCloudModel<Real> with_points(const nn::PointCloudModel<Real>& model,
                                                    const PointCloudRun& run, Index points) {
  PointCloudRun resized = run;
  resized.model.points_per_shape = points;
  nn::PointCloudModel<Real> copy = make_point_cloud_model<Real>(resized);
  const std::span<const Real> from = model.parameter_values();
  std::copy(from.begin(), from.end(), copy.parameter_values().begin());
  return copy;
}

/// Every shape's code posterior q(z | x) = N(mean, exp(log_var)), one row per shape.
template <class Real>
struct ShapeCodes {
  ///@{
  /// Means and log-variances, shapes x latent dimension.
  Batch<Real> mean, log_var;
  ///@}
};

/// Encodes `clouds` (S·N x 3) `chunk` shapes at a time; on_chunk(done, total) after each.
template <class Real, class OnChunk>
[[nodiscard]] ShapeCodes<Real> encode_shapes(nn::PointCloudModel<Real>& model,
                                             const Batch<Real>& clouds, Index chunk,
                                             OnChunk&& on_chunk) {
  const Index points = model.points_per_shape();
  const Index count = clouds.rows() / points;
  ShapeCodes<Real> codes{Batch<Real>(count, model.latent_dim()),
                         Batch<Real>(count, model.latent_dim())};
  const ddpm::detail::InferenceMode inference(model);
  Batch<Real> part, mean, log_var;
  for (Index first = 0; first < count; first += chunk) {
    const Index n = std::min(chunk, count - first);
    part = clouds.middleRows(first * points, n * points);
    model.encode(part, mean, log_var);
    codes.mean.middleRows(first, n) = mean;
    codes.log_var.middleRows(first, n) = log_var;
    on_chunk(first + n, count);
  }
  return codes;
}

/// The latent prior's data source: codes z = mean + exp(log_var / 2) eps of random training
/// shapes (with replacement, fresh eps every step, both from (seed, step)), in the prior's
/// standardized units.
template <class Real>
struct CodeBatches {
  const ShapeCodes<Real>* codes;  ///< the encoded training shapes (not owned)
  data::Standardization units;    ///< the prior's standardization of the codes
  std::uint64_t seed;             ///< of the shape and eps draws
  /// Fills out (n x latent dimension) with batch `step`.
  void operator()(std::int64_t step, Index n, Batch<Real>& out) const {
    const CounterRng rng(seed);
    const auto counter = static_cast<std::uint32_t>(step);
    const auto count = static_cast<std::uint64_t>(codes->mean.rows());
    Batch<Real> z(n, codes->mean.cols());
    rng.fill_normal(z, stream::latent, 0, counter);
    for (Index i = 0; i < n; ++i) {
      const auto shape = static_cast<Index>(
          rng.uniform_int(stream::data, static_cast<std::uint32_t>(i), counter, count));
      z.row(i) = codes->mean.row(shape).array() +
                 (codes->log_var.row(shape).array() / Real(2)).exp() * z.row(i).array();
    }
    out = units.to_model<Real>(z);
  }
};

}  // namespace ddpm::train
