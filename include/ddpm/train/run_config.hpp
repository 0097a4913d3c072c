// SPDX-License-Identifier: MIT
// What a training run is — its diffusion, its network and its data — written into a checkpoint and
// read back strictly, so that sampling rebuilds exactly what was trained and a resume that differs
// is refused with every differing field named.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <vector>

#include "ddpm/core/charconv.hpp"
#include "ddpm/core/enum_names.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/train/checkpoint.hpp"

namespace ddpm::train {

/// How a run's noise schedule was made.
enum class ScheduleKind {
  linear,  ///< NoiseSchedule::linear(T, beta_start, beta_end)
  cosine,  ///< NoiseSchedule::cosine(T, cosine_s, max_beta)
  custom,  ///< explicit betas
};

}  // namespace ddpm::train

namespace ddpm {
/// The names of the ScheduleKind values, for to_string, parse_enum and command-line choices.
template <>
struct EnumTable<train::ScheduleKind> {
  /// What the option is called in error messages.
  static constexpr std::string_view parameter = "schedule";
  /// Every value once, canonical names first.
  static constexpr std::array<EnumName<train::ScheduleKind>, 3> names = {
      {{train::ScheduleKind::linear, "linear"},
       {train::ScheduleKind::cosine, "cosine"},
       {train::ScheduleKind::custom, "custom"}}};
};
}  // namespace ddpm

namespace ddpm::train {

/// Marks checkpoints that carry a run description (the fields below); bumped when fields change
/// meaning.
inline constexpr std::string_view kRunConfigFormat = "ddpm run 1";

/// One recorded field: its metadata key, its value as exact text, and whether a resumed run must
/// have the same value (false for facts that may change without changing the run, e.g. where a
/// data file now lives).
struct Field {
  std::string key;         ///< its name, e.g. "model.hidden_dim"
  std::string text;        ///< the value as text that reads back exactly
  bool must_match = true;  ///< a resumed run must have the same value
};

namespace detail {

inline std::string exact_text(double v) { return exact_number(v); }

template <class Number>
std::string list_text(std::span<const Number> values) {
  if (values.empty()) return "none";
  std::string text;
  for (const Number v : values) {
    if (!text.empty()) text.push_back(',');
    if constexpr (std::is_floating_point_v<Number>) {
      text += exact_text(static_cast<double>(v));
    } else {
      text += std::to_string(v);
    }
  }
  return text;
}

}  // namespace detail

/// Collects typed values as fields, each written as text that reads back exactly.
class FieldWriter {
 public:
  /// Adds field `key` with `value` as it is.
  void text(std::string key, std::string value, bool must_match = true) {
    fields_.push_back({std::move(key), std::move(value), must_match});
  }
  /// Adds an integer.
  template <class Int>
    requires std::is_integral_v<Int> &&
        (!std::is_same_v<Int, bool>)void integer(std::string key, Int value) {
      text(std::move(key), std::to_string(value));
    }
    /// Adds a real number, written so that it reads back bit for bit.
    void real(std::string key, double value) { text(std::move(key), detail::exact_text(value)); }
    /// Adds true or false.
    void boolean(std::string key, bool value) { text(std::move(key), value ? "true" : "false"); }
    /// Adds an option by its canonical name.
    template <NamedEnum E>
    void choice(std::string key, E value) {
      text(std::move(key), std::string(to_string(value)));
    }
    /// A comma-separated list ("none" when empty).
    template <class Number>
    void list(std::string key, const std::vector<Number>& values) {
      text(std::move(key), detail::list_text(std::span<const Number>(values)));
    }

    /// The fields added, in order.
    [[nodiscard]] const std::vector<Field>& fields() const noexcept { return fields_; }

   private:
    std::vector<Field> fields_;
};

/// Reads fields of a checkpoint strictly: a missing or malformed field throws FormatError naming
/// the file, the field and what it should hold.
class FieldReader {
 public:
  /// Reads from `checkpoint`, which must outlive the reader.
  explicit FieldReader(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  /// The text of field `key`.
  [[nodiscard]] const std::string& text(const std::string& key) const {
    if (!checkpoint_.has(key)) {
      fail(key,
           "is missing (the file was written by another program or version; `info` shows "
           "what it holds)");
    }
    return checkpoint_.get(key);
  }
  /// Field `key` as an integer in [min, max].
  template <class Int>
  [[nodiscard]] Int integer(const std::string& key, Int min = std::numeric_limits<Int>::min(),
                            Int max = std::numeric_limits<Int>::max()) const {
    const std::string& value = text(key);
    Int v{};
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (error != std::errc{} || end != value.data() + value.size() || v < min || v > max) {
      fail(key, "= '" + value + "' is not an integer in " + std::to_string(min) + ".." +
                    std::to_string(max));
    }
    return v;
  }
  /// Field `key` as a finite real number.
  [[nodiscard]] double real(const std::string& key) const {
    const std::string& value = text(key);
    double v = 0;
    const auto [end, error] =
        ddpm::detail::from_chars_double(value.data(), value.data() + value.size(), v);
    if (error != std::errc{} || end != value.data() + value.size() || !std::isfinite(v)) {
      fail(key, "= '" + value + "' is not a finite number");
    }
    return v;
  }
  /// Field `key` as true or false.
  [[nodiscard]] bool boolean(const std::string& key) const {
    const std::string& value = text(key);
    if (value != "true" && value != "false") fail(key, "= '" + value + "' is not true or false");
    return value == "true";
  }
  /// Field `key` as an option of E, by its canonical name.
  template <NamedEnum E>
  [[nodiscard]] E choice(const std::string& key) const {
    const std::string& value = text(key);
    for (const EnumName<E>& entry : EnumTable<E>::names) {
      if (entry.name == value) return entry.value;
    }
    fail(key, "= '" + value + "' is not one of " + enum_choices<E>());
  }
  /// A comma-separated list written by FieldWriter::list.
  template <class Number>
  [[nodiscard]] std::vector<Number> list(const std::string& key) const {
    const std::string& value = text(key);
    std::vector<Number> values;
    if (value == "none") return values;
    const char* p = value.data();
    const char* end = p + value.size();
    while (p < end) {
      Number v{};
      std::from_chars_result r;
      if constexpr (std::is_floating_point_v<Number>) {
        r = ddpm::detail::from_chars_double(p, end, v);
      } else {
        r = std::from_chars(p, end, v);
      }
      bool ok = r.ec == std::errc{};
      if constexpr (std::is_floating_point_v<Number>) ok = ok && std::isfinite(v);
      if (!ok) break;
      values.push_back(v);
      p = r.ptr;
      if (p < end && *p == ',' && p + 1 < end)
        ++p;
      else if (p < end)
        break;
    }
    if (p != end || values.empty()) fail(key, "= '" + value + "' is not a comma-separated list");
    return values;
  }

  /// The checkpoint read from.
  [[nodiscard]] const Checkpoint& checkpoint() const noexcept { return checkpoint_; }
  /// Throws FormatError naming the file, field `key` and `why`.
  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw FormatError("ddpm: checkpoint '" + checkpoint_.source() + "': field '" + key + "' " +
                      why);
  }

 private:
  const Checkpoint& checkpoint_;
};

// ---- the diffusion ------------------------------------------------------------------------------

/// A noise schedule as a run describes it: its kind and parameters (or its betas), and the
/// original timesteps it keeps when it is respaced.
struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::linear;  ///< linear, cosine or custom
  int num_timesteps = 1000;                  ///< T, the number of steps before respacing
  double beta_start = 1e-4;                  ///< linear: of T = 1000 (scaled by 1000 / T)
  double beta_end = 0.02;                    ///< linear
  double cosine_s = 0.008;                   ///< cosine: the offset s
  double max_beta = 0.999;                   ///< cosine: the clip of each beta
  std::vector<double> betas{};               ///< custom: the betas, num_timesteps of them
  std::vector<int> respacing{};              ///< kept original timesteps; empty: all (not respaced)
  /// Rescaled to zero terminal SNR (NoiseSchedule::zero_terminal_snr) before respacing.
  bool zero_terminal_snr = false;

  /// The linear schedule of Ho et al. 2020 with T = num_timesteps.
  static ScheduleConfig linear(int num_timesteps) {
    return {.kind = ScheduleKind::linear, .num_timesteps = num_timesteps};
  }
  /// The cosine schedule of Nichol & Dhariwal 2021 with T = num_timesteps.
  static ScheduleConfig cosine(int num_timesteps) {
    return {.kind = ScheduleKind::cosine, .num_timesteps = num_timesteps};
  }
  /// A schedule of the given betas.
  static ScheduleConfig custom(std::vector<double> betas) {
    const int n = static_cast<int>(betas.size());
    return {.kind = ScheduleKind::custom, .num_timesteps = n, .betas = std::move(betas)};
  }

  /// The schedule before respacing (num_timesteps steps), rescaled when zero_terminal_snr.
  [[nodiscard]] NoiseSchedule base() const {
    const NoiseSchedule made = formula();
    return zero_terminal_snr ? made.zero_terminal_snr() : made;
  }
  /// The schedule its kind and parameters (or betas) give, before any rescaling.
  [[nodiscard]] NoiseSchedule formula() const {
    switch (kind) {
      case ScheduleKind::linear:
        return NoiseSchedule::linear(num_timesteps, beta_start, beta_end);
      case ScheduleKind::cosine:
        return NoiseSchedule::cosine(num_timesteps, cosine_s, max_beta);
      case ScheduleKind::custom:
        ddpm::detail::require(static_cast<int>(betas.size()) == num_timesteps, "betas",
                              betas.size(), "num_timesteps = " + std::to_string(num_timesteps));
        return NoiseSchedule(betas);
    }
    throw InvalidArgument("schedule", std::to_string(static_cast<int>(kind)), "a ScheduleKind");
  }
  /// The schedule (respaced when respacing is set).
  [[nodiscard]] NoiseSchedule make() const {
    return respacing.empty() ? base() : base().respaced(respacing);
  }

  /// Writes the diffusion.* schedule fields.
  void write(FieldWriter& w) const {
    w.choice("diffusion.schedule", kind);
    w.integer("diffusion.T", num_timesteps);
    if (kind == ScheduleKind::linear) {
      w.real("diffusion.beta_start", beta_start);
      w.real("diffusion.beta_end", beta_end);
    } else if (kind == ScheduleKind::cosine) {
      w.real("diffusion.cosine_s", cosine_s);
      w.real("diffusion.max_beta", max_beta);
    }
    w.list("diffusion.respacing", respacing);
    w.boolean("diffusion.zero_terminal_snr", zero_terminal_snr);
  }
  /// Reads the diffusion.* schedule fields back strictly.
  static ScheduleConfig read(const FieldReader& r) {
    ScheduleConfig s;
    s.kind = r.choice<ScheduleKind>("diffusion.schedule");
    s.num_timesteps = r.integer<int>("diffusion.T", 1, 1 << 24);
    if (s.kind == ScheduleKind::linear) {
      s.beta_start = r.real("diffusion.beta_start");
      s.beta_end = r.real("diffusion.beta_end");
    } else if (s.kind == ScheduleKind::cosine) {
      s.cosine_s = r.real("diffusion.cosine_s");
      s.max_beta = r.real("diffusion.max_beta");
    }
    s.respacing = r.list<int>("diffusion.respacing");
    // Absent in checkpoints from before the option: off.
    if (r.checkpoint().has("diffusion.zero_terminal_snr")) {
      s.zero_terminal_snr = r.boolean("diffusion.zero_terminal_snr");
    }
    // The betas themselves (after any rescaling): the schedule of a custom run (rescaling them
    // again is the identity), a check of the formula otherwise.
    const Tensor& stored = r.checkpoint().tensor("diffusion.betas");
    if (stored.type == Tensor::Type::i64 || stored.shape.size() != 1 ||
        stored.real.size() != static_cast<std::size_t>(s.num_timesteps)) {
      r.fail("diffusion.betas",
             "must hold diffusion.T = " + std::to_string(s.num_timesteps) + " real values");
    }
    if (s.kind == ScheduleKind::custom) s.betas = stored.real;
    try {
      const std::vector<double> made = s.base().betas();
      for (std::size_t i = 0; i < made.size(); ++i) {
        if (!(std::abs(made[i] - stored.real[i]) <= 1e-12 * std::abs(made[i]))) {
          r.fail("diffusion.betas",
                 "differ from the " + std::string(to_string(s.kind)) +
                     " schedule its fields describe, at t = " + std::to_string(i));
        }
      }
      if (!s.respacing.empty()) (void)s.make();
    } catch (const InvalidArgument& e) {
      r.fail("diffusion.schedule", std::string("does not make a valid schedule: ") + e.what());
    }
    return s;
  }
};

/// The diffusion of a run: its schedule and the options of GaussianDiffusion.
struct DiffusionConfig {
  ScheduleConfig schedule;   ///< the noise schedule
  DiffusionOptions options;  ///< output, variance, loss and the other options of GaussianDiffusion

  /// The diffusion of the run.
  template <class Real>
  [[nodiscard]] GaussianDiffusion<Real> make() const {
    return GaussianDiffusion<Real>(schedule.make(), options);
  }
  /// The diffusion on `steps` evenly spaced timesteps (0 or all of them: the schedule itself),
  /// for sampling with fewer steps.
  template <class Real>
  [[nodiscard]] GaussianDiffusion<Real> make_respaced(int steps) const {
    const NoiseSchedule full = schedule.make();
    ddpm::detail::require(steps >= 0 && steps <= full.size(), "sample steps", steps,
                          "0.." + std::to_string(full.size()) + " (0: all)");
    if (steps == 0 || steps == full.size()) return GaussianDiffusion<Real>(full, options);
    return GaussianDiffusion<Real>(full.respaced("evenly " + std::to_string(steps)), options);
  }
  /// True when the model outputs a variance too (twice the data's columns).
  [[nodiscard]] bool learned_variance() const noexcept {
    return options.variance == VarianceKind::learned ||
           options.variance == VarianceKind::learned_range;
  }

  /// Writes the diffusion.* fields.
  void write(FieldWriter& w) const {
    schedule.write(w);
    w.choice("diffusion.output", options.output);
    w.choice("diffusion.variance", options.variance);
    w.choice("diffusion.loss", options.loss);
    w.choice("diffusion.decoder", options.decoder);
    w.boolean("diffusion.clip_x0", options.clip_x0);
    w.boolean("diffusion.rescale_hybrid", options.rescale_hybrid);
    w.choice("diffusion.snr_weighting", options.snr_weighting);
    if (options.snr_weighting != SnrWeighting::none)
      w.real("diffusion.snr_gamma", options.snr_gamma);
  }
  /// Reads the diffusion.* fields back strictly.
  static DiffusionConfig read(const FieldReader& r) {
    DiffusionConfig d;
    d.schedule = ScheduleConfig::read(r);
    d.options.output = r.choice<ModelOutput>("diffusion.output");
    d.options.variance = r.choice<VarianceKind>("diffusion.variance");
    d.options.loss = r.choice<LossKind>("diffusion.loss");
    d.options.decoder = r.choice<Decoder>("diffusion.decoder");
    d.options.clip_x0 = r.boolean("diffusion.clip_x0");
    d.options.rescale_hybrid = r.boolean("diffusion.rescale_hybrid");
    // Absent in checkpoints from before the option: no weighting.
    if (r.checkpoint().has("diffusion.snr_weighting")) {
      d.options.snr_weighting = r.choice<SnrWeighting>("diffusion.snr_weighting");
    }
    if (d.options.snr_weighting != SnrWeighting::none) {
      d.options.snr_gamma = r.real("diffusion.snr_gamma");
      if (!(d.options.snr_gamma > 0.0)) r.fail("diffusion.snr_gamma", "is not > 0");
    }
    return d;
  }
};

// ---- the data -----------------------------------------------------------------------------------

/// Where a run's training data came from and how they were standardized.
struct DataConfig {
  std::string name{};           ///< a built-in data set ("moons", "fashion-mnist") or "file"
  std::string path{};           ///< the file or folder read (absolute); empty for generated data
  std::int64_t rows = 0;        ///< points or images read (0 for generated data)
  std::string fingerprint{};    ///< CRC-32 of the data read, as 8 hex digits (empty: generated)
  std::vector<double> mean{};   ///< the model sees (x - mean) / scale per column; empty: no
  std::vector<double> scale{};  ///<   standardization (scale: the standard deviations)
  std::vector<double> frame{};  ///< 2-D data: the pictures' x_min, x_max, y_min, y_max (or empty)

  /// True for data read from a file (false for generated data).
  [[nodiscard]] bool from_file() const noexcept { return !path.empty(); }

  /// Writes the data.* fields.
  void write(FieldWriter& w) const {
    w.text("data.name", name);
    // Where the file lives may change (a moved folder); its contents may not.
    w.text("data.path", path.empty() ? "none" : path, /*must_match=*/false);
    w.integer("data.rows", rows);
    w.text("data.fingerprint", fingerprint.empty() ? "none" : fingerprint);
    w.list("data.mean", mean);
    w.list("data.std", scale);
    w.list("data.frame", frame);
  }
  /// Reads the data.* fields back strictly.
  static DataConfig read(const FieldReader& r) {
    DataConfig d;
    d.name = r.text("data.name");
    if (d.name.empty()) r.fail("data.name", "is empty");
    d.path = r.text("data.path");
    if (d.path == "none") d.path.clear();
    d.rows = r.integer<std::int64_t>("data.rows", 0);
    d.fingerprint = r.text("data.fingerprint");
    if (d.fingerprint == "none") d.fingerprint.clear();
    d.mean = r.list<double>("data.mean");
    d.scale = r.list<double>("data.std");
    if (d.mean.size() != d.scale.size()) r.fail("data.std", "has not as many values as data.mean");
    for (const double s : d.scale) {
      if (!(s > 0.0)) r.fail("data.std", "holds a value that is not > 0");
    }
    d.frame = r.list<double>("data.frame");
    if (!d.frame.empty() && d.frame.size() != 4) r.fail("data.frame", "must hold 4 values");
    return d;
  }
};

/// CRC-32 of a matrix's values (little-endian bytes of its scalar type, row by row) as 8 hex
/// digits: DataConfig::fingerprint. Streams, so large image sets need no copy.
template <class Derived>
std::string data_fingerprint(const Eigen::DenseBase<Derived>& values) {
  using Scalar = typename Derived::Scalar;
  std::uint32_t crc = 0;
  std::string row;
  for (Index i = 0; i < values.rows(); ++i) {
    row.clear();
    for (Index j = 0; j < values.cols(); ++j) detail::put_le<Scalar>(row, values(i, j));
    crc = detail::crc32_update(crc, row);
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(crc));
  return hex;
}

// ---- the model ----------------------------------------------------------------------------------

/// Specialize for a network's configuration type (see train/model_fields.hpp for nn::MlpConfig and
/// nn::UNetConfig) with
///   static constexpr std::string_view kind;          // "mlp": the model.kind field
///   static void write(FieldWriter&, const Config&);  // fields named "model.*"
///   static Config read(const FieldReader&);
template <class Config>
struct ModelFields;

// ---- the whole run ------------------------------------------------------------------------------

/// Everything that defines a trained model: the diffusion, the network's configuration and the
/// data. Stored in every checkpoint (to_checkpoint) and read back strictly (from_checkpoint), so
/// `sample` rebuilds exactly what `train` trained and a resume can be checked (differences).
///
/// Which fields must match on resume: all of them except data.path. The diffusion (schedule,
/// betas, T, output, variance, loss, decoder, clipping, hybrid rescaling) defines what the network
/// learns; the model fields define the weights' shapes and meaning; the data (name, row count,
/// fingerprint, standardization, frame) define what it learns from. Training knobs (steps,
/// learning rate and its schedule, batch size, gradient clipping, checkpoint frequency, label
/// dropout) are not part of a RunConfig: they may change on resume. The Trainer records them as
/// "train.*" for `info`.
template <class ModelConfig>
struct RunConfig {
  DiffusionConfig diffusion;  ///< schedule and GaussianDiffusion options
  ModelConfig model;          ///< the network's configuration
  DataConfig data;            ///< the training data and their standardization

  /// Every field, in order: diffusion.*, model.*, data.*.
  [[nodiscard]] std::vector<Field> fields() const {
    FieldWriter w;
    diffusion.write(w);
    w.text("model.kind", std::string(ModelFields<ModelConfig>::kind));
    ModelFields<ModelConfig>::write(w, model);
    data.write(w);
    return w.fields();
  }

  /// The model.* fields as one line ("mlp input_dim=2 ..."): the architecture a Trainer checks.
  [[nodiscard]] std::string describe_model() const {
    FieldWriter w;
    ModelFields<ModelConfig>::write(w, model);
    std::string text(ModelFields<ModelConfig>::kind);
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on the operator+ chain.
    for (const Field& f : w.fields()) text.append(" ").append(f.key, 6).append("=").append(f.text);
    return text;
  }

  /// Writes the fields as metadata, and the schedule's betas (before respacing) as the f64
  /// tensor "diffusion.betas".
  void to_checkpoint(Checkpoint& c) const {
    c.set("run.format", std::string(kRunConfigFormat));
    for (const Field& f : fields()) c.set(f.key, f.text);
    const std::vector<double> betas = diffusion.schedule.base().betas();
    c.put<double>("diffusion.betas", std::span<const double>(betas));
  }

  /// Reads what to_checkpoint wrote; throws FormatError naming a missing or malformed field, or
  /// saying that the file has no run description at all (an older checkpoint).
  static RunConfig from_checkpoint(const Checkpoint& c) {
    if (!c.has("run.format")) {
      throw FormatError("ddpm: checkpoint '" + c.source() + "' has no run description" +
                        (c.has("format") ? " (its format is '" + c.get("format") + "')" : "") +
                        ": it was written by an older version or by a Trainer alone; train it "
                        "again with this version");
    }
    if (c.get("run.format") != kRunConfigFormat) {
      throw FormatError("ddpm: checkpoint '" + c.source() + "' has run format '" +
                        c.get("run.format") + "'; this build reads '" +
                        std::string(kRunConfigFormat) + "'");
    }
    const FieldReader r(c);
    RunConfig run;
    run.diffusion = DiffusionConfig::read(r);
    const std::string& kind = r.text("model.kind");
    if (kind != ModelFields<ModelConfig>::kind) {
      r.fail("model.kind", "= '" + kind + "': this program builds a '" +
                               std::string(ModelFields<ModelConfig>::kind) + "' model");
    }
    run.model = ModelFields<ModelConfig>::read(r);
    run.data = DataConfig::read(r);
    return run;
  }
};

/// Each field whose value differs between `saved` (a checkpoint's) and `run` (this run's), as
/// "diffusion.schedule: checkpoint linear, this run cosine"; fields with must_match = false are
/// skipped, and so are the parameters of a schedule kind the other side does not have. Custom
/// betas are compared value by value.
template <class ModelConfig>
std::vector<std::string> differences(const RunConfig<ModelConfig>& saved,
                                     const RunConfig<ModelConfig>& run) {
  const std::vector<Field> a = saved.fields(), b = run.fields();
  std::vector<std::string> out;
  const auto find = [](const std::vector<Field>& fields, const std::string& key) -> const Field* {
    for (const Field& f : fields) {
      if (f.key == key) return &f;
    }
    return nullptr;
  };
  // A field only one side has (the parameters of another schedule kind) is listed only when no
  // field both sides have differs in its section: "diffusion.schedule: ... linear, ... cosine"
  // says it.
  const auto section = [](const std::string& key) { return key.substr(0, key.find('.')); };
  std::vector<std::string> explained;
  for (const Field& f : a) {
    const Field* other = find(b, f.key);
    if (f.must_match && other != nullptr && other->text != f.text) {
      explained.push_back(section(f.key));
    }
  }
  const auto listed = [&](const std::string& key) {
    return std::find(explained.begin(), explained.end(), section(key)) == explained.end();
  };
  for (const Field& f : a) {
    const Field* other = find(b, f.key);
    if (!f.must_match || (other != nullptr && other->text == f.text)) continue;
    if (other == nullptr && !listed(f.key)) continue;
    out.push_back(f.key + ": checkpoint " + f.text + ", this run " +
                  (other != nullptr ? other->text : std::string("(none)")));
  }
  for (const Field& f : b) {
    if (f.must_match && find(a, f.key) == nullptr && listed(f.key)) {
      out.push_back(f.key + ": checkpoint (none), this run " + f.text);
    }
  }
  const ScheduleConfig& sa = saved.diffusion.schedule;
  const ScheduleConfig& sb = run.diffusion.schedule;
  // Custom betas as the schedules use them: a checkpoint holds them after zero-terminal-SNR
  // rescaling, a run's options before it.
  const auto used_betas = [](const ScheduleConfig& s) {
    return s.zero_terminal_snr && s.betas.size() >= 2 ? s.base().betas() : s.betas;
  };
  const std::vector<double> betas_a =
      sa.kind == ScheduleKind::custom ? used_betas(sa) : std::vector<double>{};
  const std::vector<double> betas_b =
      sb.kind == ScheduleKind::custom ? used_betas(sb) : std::vector<double>{};
  if (sa.kind == ScheduleKind::custom && sb.kind == ScheduleKind::custom && betas_a != betas_b) {
    std::size_t i = 0;
    while (i < std::min(betas_a.size(), betas_b.size()) && betas_a[i] == betas_b[i]) ++i;
    out.push_back("diffusion.betas: differ from t = " + std::to_string(i));
  }
  return out;
}

/// Throws FormatError unless `run` matches `saved` (the configuration read from `source`), listing
/// every differing field; `hint` ends the message (e.g. how to start from the weights instead).
template <class ModelConfig>
void require_same_run(const RunConfig<ModelConfig>& saved, const RunConfig<ModelConfig>& run,
                      const std::string& source, const std::string& hint) {
  const std::vector<std::string> diff = differences(saved, run);
  if (diff.empty()) return;
  std::string message = "ddpm: cannot resume from '" + source + "': this run differs in " +
                        std::to_string(diff.size()) + (diff.size() == 1 ? " field" : " fields");
  for (const std::string& d : diff) message += "\n  " + d;
  throw FormatError(message + (hint.empty() ? "" : "\n" + hint));
}

// ---- weights and `info` -------------------------------------------------------------------------

/// Which weights of a checkpoint to load.
enum class Weights {
  ema,  ///< the EMA of the weights when the checkpoint has one (what sampling should use)
  raw,  ///< the optimizer's weights
};

/// Copies the weights of checkpoint `c` (written by Trainer::checkpoint) into `model`'s
/// parameters; the EMA shadow holds them in parameters() order.
template <class Model>
void load_weights(const Checkpoint& c, Model& model, Weights which = Weights::ema) {
  if (which == Weights::ema && c.contains("ema.shadow")) {
    const Tensor& shadow = c.tensor("ema.shadow");
    std::size_t offset = 0, total = 0;
    for (const auto& block : model.parameters()) total += block.value.size();
    if (shadow.real.size() != total || shadow.type == Tensor::Type::i64) {
      throw FormatError("ddpm: checkpoint '" + c.source() + "': tensor 'ema.shadow' has " +
                        std::to_string(shadow.size()) + " values; the model has " +
                        std::to_string(total) + " parameters");
    }
    for (const auto& block : model.parameters()) {
      for (auto& v : block.value) {
        v = static_cast<std::remove_reference_t<decltype(v)>>(shadow.real[offset++]);
      }
    }
    return;
  }
  for (const auto& block : model.parameters()) c.take("model." + block.name, block.value);
}

/// Prints what checkpoint `c` holds: every metadata field (sorted by name), the step, the number
/// of parameters, the betas and the tensors' sizes.
inline void write_info(const Checkpoint& c, std::ostream& out) {
  std::uint64_t parameters = 0;
  for (const auto& [name, tensor] : c.tensors()) {
    if (name.rfind("model.", 0) == 0) parameters += tensor.size();
  }
  out << "checkpoint: " << c.source() << "\n"
      << "step: " << (c.has("step") ? c.get("step") : std::string("(none)")) << "\n"
      << "parameters: " << parameters << "\n"
      << "ema: " << (c.contains("ema.shadow") ? "yes" : "no") << "\n";
  std::size_t width = 0;
  for (const auto& [key, value] : c.metadata()) width = std::max(width, key.size());
  for (const auto& [key, value] : c.metadata()) {
    out << key << std::string(width + 2 - key.size(), ' ') << value << "\n";
  }
  if (c.contains("diffusion.betas")) {
    const std::vector<double>& betas = c.tensor("diffusion.betas").real;
    if (!betas.empty()) {
      out << "diffusion.betas" << std::string(width + 2 > 15 ? width + 2 - 15 : 1, ' ')
          << betas.size() << " values, first " << detail::exact_text(betas.front()) << ", last "
          << detail::exact_text(betas.back()) << "\n";
    }
  }
  out << "tensors:";
  for (const auto& [name, tensor] : c.tensors()) {
    if (name.rfind("model.", 0) != 0) out << " " << name << "(" << tensor.size() << ")";
  }
  out << " and " << parameters << " model.* values\n";
}

}  // namespace ddpm::train
