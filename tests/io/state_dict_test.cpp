// SPDX-License-Identifier: MIT
// Tests of ddpm/io/state_dict.hpp: the tables against the models' parameters(), the committed
// PyTorch fixtures (benchmarks/make_state_dict_fixtures.py) reproduced by ddpm, bitwise round
// trips, the error that lists every mismatch, and, when /usr/bin/python3 has torch, both
// directions live.
#include "ddpm/io/state_dict.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "ddpm/train/model_fields.hpp"
#include "nn/tiny_configs.hpp"
#include "support.hpp"

namespace state_dict_test {

namespace {

namespace fs = std::filesystem;
using ddpm::Batch;
using ddpm::Index;
using ddpm::io::SafetensorsDtype;
using ddpm::io::SafetensorsFile;
using ddpm::io::SafetensorsWriter;
using ddpm::io::StateDictEntry;
using ddpm::test::TempDir;

const fs::path kFixtures = fs::path(DDPM_TEST_SOURCE_DIR) / "io" / "data";
const fs::path kScript =
    fs::path(DDPM_TEST_SOURCE_DIR) / ".." / "benchmarks" / "make_state_dict_fixtures.py";

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---- configurations
// ------------------------------------------------------------------------------

/// A UNet with everything the table must follow: three levels, two blocks per level, attention at
/// two resolutions, labels, scale-shift and a learned variance.
ddpm::nn::UNetConfig rich_unet_config() {
  ddpm::nn::UNetConfig c;
  c.image_channels = 3;
  c.height = 8;
  c.width = 8;
  c.output_channels = 6;
  c.base_channels = 4;
  c.channel_mult = {1, 2, 3};
  c.res_blocks = 2;
  c.attention_resolutions = {8, 2};
  c.attention_heads = 2;
  c.groups = 2;
  c.num_classes = 4;
  c.injection = ddpm::nn::EmbeddingInjection::scale_shift;
  c.seed = 3;
  return c;
}

/// The model fields of __metadata__ (written by torch_models.config_to_metadata) read back by
/// ddpm's own checkpoint reader: the Python spelling is the C++ one.
template <class Config>
Config config_from_metadata(const SafetensorsFile& file) {
  ddpm::train::Checkpoint c;
  for (const auto& [key, value] : file.metadata()) c.set(key, value);
  REQUIRE(c.has("model.kind"));
  CHECK(c.get("model.kind") == ddpm::train::ModelFields<Config>::kind);
  return ddpm::train::ModelFields<Config>::read(ddpm::train::FieldReader(c));
}

/// The classifier of the fixtures (no checkpoint fields exist for it: checked key by key).
ddpm::nn::ClassifierConfig classifier_from_metadata(const SafetensorsFile& file) {
  ddpm::nn::ClassifierConfig c;
  c.image_channels = 1;
  c.height = 8;
  c.width = 8;
  c.base_channels = 4;
  c.channel_mult = {1, 2};
  c.res_blocks = 2;
  c.groups = 2;
  c.num_classes = 3;
  c.feature_dim = 5;
  const std::map<std::string, std::string> expected = {
      {"model.kind", "classifier"}, {"model.channels", "1"}, {"model.height", "8"},
      {"model.width", "8"},         {"model.base", "4"},     {"model.mult", "1,2"},
      {"model.res_blocks", "2"},    {"model.groups", "2"},   {"model.dropout", "0"},
      {"model.classes", "3"},       {"model.features", "5"}, {"model.max_period", "10000"}};
  CHECK(file.metadata() == expected);
  return c;
}

template <class Model>
std::vector<std::pair<std::string, std::size_t>> blocks_of(Model& model) {
  std::vector<std::pair<std::string, std::size_t>> out;
  for (const auto& block : model.parameters()) out.emplace_back(block.name, block.value.size());
  return out;
}

std::vector<std::pair<std::string, std::size_t>> entries_of(const std::vector<StateDictEntry>& t) {
  std::vector<std::pair<std::string, std::size_t>> out;
  for (const StateDictEntry& e : t) out.emplace_back(e.name, static_cast<std::size_t>(e.numel()));
  return out;
}

const StateDictEntry& entry(const std::vector<StateDictEntry>& table, const std::string& name) {
  const auto it = std::find_if(table.begin(), table.end(),
                               [&](const StateDictEntry& e) { return e.name == name; });
  REQUIRE(it != table.end());
  return *it;
}

// ---- comparing with torch
// ------------------------------------------------------------------------

/// max |a - b| over two equally long sequences.
template <class A, class B>
double max_difference(const A& a, const B& b) {
  REQUIRE(static_cast<std::size_t>(a.size()) == static_cast<std::size_t>(b.size()));
  double worst = 0.0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(a.size()); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
  }
  return worst;
}

template <class Real>
Batch<Real> rows_of(const SafetensorsFile& io, const std::string& name, Index rows) {
  const std::vector<Real> v = io.values<Real>(name);
  const Index cols = static_cast<Index>(v.size()) / rows;
  Batch<Real> b(rows, cols);
  std::copy(v.begin(), v.end(), b.data());
  return b;
}

std::vector<int> integers_of(const SafetensorsFile& io, const std::string& name) {
  std::vector<int> out;
  for (const double v : io.values<double>(name)) out.push_back(static_cast<int>(v));
  return out;
}

/// Tolerances: float64 weights reproduce torch's float64 outputs to rounding (measured ~1e-15 on
/// outputs of size ~1); float32 differs by float32 rounding through a few layers (~1e-6).
template <class Real>
double tolerance() {
  return sizeof(Real) == 8 ? 1e-12 : 2e-5;
}

/// Loads <dir>/torch_<kind>.safetensors into the ddpm model its metadata describes and compares
/// its outputs on <dir>/torch_<kind>_io.safetensors with torch's. (No SUBCASEs: the live test
/// calls it once after running Python.)
template <class Real>
void check_fixtures(const fs::path& dir) {
  {
    const SafetensorsFile weights = SafetensorsFile::load(dir / "torch_mlp.safetensors");
    const SafetensorsFile io = SafetensorsFile::load(dir / "torch_mlp_io.safetensors");
    ddpm::nn::Mlp<Real> model(config_from_metadata<ddpm::nn::MlpConfig>(weights));
    CHECK(model.config().residual);
    CHECK(model.config().num_classes == 2);
    ddpm::io::load_state_dict(weights, model);
    model.set_training(false);
    const Batch<Real> x = rows_of<Real>(io, "x", 3);
    const std::vector<int> t = integers_of(io, "t");
    const std::vector<int> labels = integers_of(io, "labels");
    CHECK(labels[1] == ddpm::kNoLabel);
    Batch<Real> out;
    model.predict(x, t, labels, out);
    const double diff = max_difference(out, io.values<double>("out"));
    MESSAGE("ToyMlp max |ddpm - torch| = " << diff);
    CHECK(diff <= tolerance<Real>());
    const std::vector<double> t_real = io.values<double>("t_real");
    model.predict(x, std::span<const double>(t_real), labels, out);
    CHECK(max_difference(out, io.values<double>("out_real")) <= tolerance<Real>());
  }
  {
    const SafetensorsFile weights = SafetensorsFile::load(dir / "torch_unet.safetensors");
    const SafetensorsFile io = SafetensorsFile::load(dir / "torch_unet_io.safetensors");
    ddpm::nn::UNet<Real> model(config_from_metadata<ddpm::nn::UNetConfig>(weights));
    CHECK(model.config().injection == ddpm::nn::EmbeddingInjection::scale_shift);
    CHECK(model.config().attention_heads == 2);
    CHECK(weights.tensor("conv_in.weight").dtype == SafetensorsDtype::f32);
    ddpm::io::load_state_dict(weights, model);
    model.set_training(false);  // the fixture has dropout 0.1: inference is without it
    const Batch<Real> x = rows_of<Real>(io, "x", 3);
    const std::vector<int> t = integers_of(io, "t");
    const std::vector<int> labels = integers_of(io, "labels");
    Batch<Real> out;
    model.predict(x, t, labels, out);
    const double diff = max_difference(out, io.values<double>("out"));
    MESSAGE("UNet max |ddpm - torch| = " << diff);
    CHECK(diff <= tolerance<Real>());
    const std::vector<double> t_real = io.values<double>("t_real");
    model.predict(x, std::span<const double>(t_real), labels, out);
    CHECK(max_difference(out, io.values<double>("out_real")) <= tolerance<Real>());
  }
  {
    const SafetensorsFile weights = SafetensorsFile::load(dir / "torch_classifier.safetensors");
    const SafetensorsFile io = SafetensorsFile::load(dir / "torch_classifier_io.safetensors");
    ddpm::nn::Classifier<Real> model(classifier_from_metadata(weights));
    ddpm::io::load_state_dict(weights, model);
    model.set_training(false);
    const Batch<Real> x = rows_of<Real>(io, "x", 3);
    const std::vector<int> t = integers_of(io, "t");
    Batch<Real> logits, features;
    model.logits(x, t, logits);
    model.features(x, t, features);
    const double diff = max_difference(logits, io.values<double>("logits"));
    MESSAGE("Classifier max |ddpm - torch| = " << diff);
    CHECK(diff <= tolerance<Real>());
    CHECK(max_difference(features, io.values<double>("features")) <= tolerance<Real>());
  }
}

/// The python with torch, or "" (the tests that need it then skip). The probe finds the package
/// without importing it (an import costs seconds).
std::string python_with_torch() {
  const std::string python = "/usr/bin/python3";
  const std::string probe = python +
                            " -c 'import importlib.util, sys; "
                            "sys.exit(importlib.util.find_spec(\"torch\") is None)' "
                            ">/dev/null 2>&1";
  return std::system(probe.c_str()) == 0 ? python : std::string();
}

/// Writes `model`'s weights (float64, with its metadata) and its outputs on a small batch, for
/// the script's `check`.
template <class Model>
void export_with_outputs(Model& model, const std::map<std::string, std::string>& metadata,
                         const fs::path& weights, const fs::path& io_path, Index features,
                         bool labelled) {
  SafetensorsWriter w;
  for (const auto& [key, value] : metadata) w.set_metadata(key, value);
  ddpm::io::add_state_dict(w, model, SafetensorsDtype::f64);
  w.write(weights);
  model.set_training(false);
  const Batch<double> x = ddpm::test::random_batch<double>(3, features, 11);
  const std::vector<int> t = {0, 250, 999};
  const std::vector<double> t_column(t.begin(), t.end());
  SafetensorsWriter io;
  io.add<double>("x", {3, features}, std::span<const double>(x.data(), x.size()),
                 SafetensorsDtype::f64);
  io.add<double>("t", {3}, std::span<const double>(t_column), SafetensorsDtype::f64);
  Batch<double> out;
  if constexpr (requires { model.logits(x, t, out); }) {
    model.logits(x, t, out);
    io.add<double>("logits", {out.rows(), out.cols()},
                   std::span<const double>(out.data(), out.size()), SafetensorsDtype::f64);
    model.features(x, t, out);
    io.add<double>("features", {out.rows(), out.cols()},
                   std::span<const double>(out.data(), out.size()), SafetensorsDtype::f64);
  } else {
    const std::vector<int> labels =
        labelled ? std::vector<int>{2, ddpm::kNoLabel, 0} : std::vector<int>{};
    model.predict(x, t, labels, out);
    if (labelled) {
      const std::vector<double> label_column(labels.begin(), labels.end());
      io.add<double>("labels", {3}, std::span<const double>(label_column), SafetensorsDtype::f64);
    }
    io.add<double>("out", {out.rows(), out.cols()}, std::span<const double>(out.data(), out.size()),
                   SafetensorsDtype::f64);
  }
  io.write(io_path);
}

template <class Config>
std::map<std::string, std::string> metadata_of(const Config& config) {
  ddpm::train::FieldWriter w;
  ddpm::train::ModelFields<Config>::write(w, config);
  std::map<std::string, std::string> out{
      {"model.kind", std::string(ddpm::train::ModelFields<Config>::kind)}};
  for (const ddpm::train::Field& f : w.fields()) out[f.key] = f.text;
  return out;
}

}  // namespace

TEST_CASE("state_dict tables list every parameter block of the model in parameters() order") {
  SUBCASE("Mlp, with and without labels") {
    for (const int classes : {0, 3}) {
      ddpm::nn::Mlp<double> model(ddpm::test::tiny_mlp_config(3, classes, true));
      CHECK(entries_of(ddpm::io::state_dict_table(model.config())) == blocks_of(model));
    }
    const auto table = ddpm::io::state_dict_table(ddpm::nn::toy_mlp_config());
    CHECK(entry(table, "layer0.weight").shape == std::vector<std::int64_t>{256, 66});
    CHECK(entry(table, "layer0.weight").layout == ddpm::io::TensorLayout::linear);
    CHECK(entry(table, "layer3.bias").shape == std::vector<std::int64_t>{2});
  }
  SUBCASE("UNet: the reference, the tiny test one and a rich one") {
    for (const ddpm::nn::UNetConfig& config :
         {ddpm::nn::unet_small_config(), ddpm::test::tiny_unet_config(), rich_unet_config()}) {
      ddpm::nn::UNet<float> model(config);
      CHECK(entries_of(ddpm::io::state_dict_table(config)) == blocks_of(model));
    }
    const auto table = ddpm::io::state_dict_table(rich_unet_config());
    // The first up block reads [h (12 channels), skip (12)]; its skip conv goes 24 -> 12.
    CHECK(entry(table, "up2.block0.skip.weight").shape == std::vector<std::int64_t>{12, 24, 1, 1});
    CHECK(entry(table, "up0.block1.conv1.weight").shape == std::vector<std::int64_t>{4, 8, 3, 3});
    CHECK(entry(table, "down2.block1.attention.qkv.weight").shape ==
          std::vector<std::int64_t>{36, 12, 1, 1});
    CHECK(entry(table, "middle.block0.emb.weight").shape == std::vector<std::int64_t>{24, 16});
    CHECK(entry(table, "label_embedding.weight").shape == std::vector<std::int64_t>{5, 16});
    std::int64_t total = 0;
    for (const StateDictEntry& e : ddpm::io::state_dict_table(ddpm::nn::unet_small_config())) {
      total += e.numel();
    }
    CHECK(total == 793697);  // torch_reference.py's UNET_SMALL_PARAMETERS
  }
  SUBCASE("Classifier") {
    ddpm::nn::ClassifierConfig config = ddpm::test::tiny_classifier_config();
    config.res_blocks = 2;
    ddpm::nn::Classifier<double> model(config);
    const auto table = ddpm::io::state_dict_table(config);
    CHECK(entries_of(table) == blocks_of(model));
    CHECK(entry(table, "head.1.weight").shape == std::vector<std::int64_t>{3, 5});
  }
}

TEST_CASE("the layouts put torch's element (o, i[, ky, kx]) where ddpm's layer reads it") {
  // A Linear of 2 -> 3 and a 3x3 Conv2d of 2 -> 3 with torch values 0, 1, 2, ... read through
  // the layers' own weight() maps.
  ddpm::nn::ParameterStore<double> store;
  ddpm::nn::Linear<double> linear(store, "fc", 2, 3);
  ddpm::nn::Conv2d<double> conv(store, "conv", 2, 3, 3);
  store.allocate();
  linear.bind(store);
  conv.bind(store);
  std::vector<StateDictEntry> table = {{"fc.weight", {3, 2}, ddpm::io::TensorLayout::linear},
                                       {"fc.bias", {3}, ddpm::io::TensorLayout::same},
                                       {"conv.weight", {3, 2, 3, 3}, ddpm::io::TensorLayout::conv},
                                       {"conv.bias", {3}, ddpm::io::TensorLayout::same}};
  SafetensorsWriter w;
  for (const StateDictEntry& e : table) {
    std::vector<double> v(static_cast<std::size_t>(e.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
    w.add<double>(e.name, e.shape, std::span<const double>(v), SafetensorsDtype::f64);
  }
  TempDir dir;
  w.write(dir.path / "layers.safetensors");
  ddpm::io::load_state_dict<double>(SafetensorsFile::load(dir.path / "layers.safetensors"), table,
                                    store.values());
  for (Index o = 0; o < 3; ++o) {
    for (Index i = 0; i < 2; ++i) CHECK(linear.weight()(i, o) == static_cast<double>(o * 2 + i));
    CHECK(linear.bias()(o) == static_cast<double>(o));
    for (Index ci = 0; ci < 2; ++ci) {
      for (Index ky = 0; ky < 3; ++ky) {
        for (Index kx = 0; kx < 3; ++kx) {
          CHECK(conv.weight()((ky * 3 + kx) * 2 + ci, o) ==
                static_cast<double>(((o * 2 + ci) * 3 + ky) * 3 + kx));
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE("the committed torch fixtures: ddpm reproduces torch_models' outputs", Real,
                   float, double) {
  check_fixtures<Real>(kFixtures);
}

TEST_CASE("add_state_dict -> load_state_dict round trips bitwise") {
  TempDir dir;
  const fs::path file = dir.path / "weights.safetensors";
  SUBCASE("UNet, double stored as F64") {
    const ddpm::nn::UNetConfig config = rich_unet_config();
    const ddpm::nn::UNet<double> saved(config);
    SafetensorsWriter w;
    ddpm::io::add_state_dict(w, saved, SafetensorsDtype::f64);
    w.write(file);
    ddpm::nn::UNetConfig other = config;
    other.seed = 99;
    ddpm::nn::UNet<double> loaded(other);
    REQUIRE(!std::ranges::equal(loaded.parameter_values(), saved.parameter_values()));
    ddpm::io::load_state_dict(SafetensorsFile::load(file), loaded);
    CHECK(std::ranges::equal(loaded.parameter_values(), saved.parameter_values()));
  }
  SUBCASE("Mlp and Classifier, float stored as F32 (the default)") {
    const ddpm::nn::Mlp<float> mlp(ddpm::test::tiny_mlp_config(6, 2, false));
    const ddpm::nn::Classifier<float> classifier(ddpm::test::tiny_classifier_config());
    SafetensorsWriter w_mlp, w_classifier;
    ddpm::io::add_state_dict(w_mlp, mlp);
    ddpm::io::add_state_dict(w_classifier, classifier);
    w_mlp.write(dir.path / "mlp.safetensors");
    w_classifier.write(dir.path / "classifier.safetensors");
    const SafetensorsFile mlp_file = SafetensorsFile::load(dir.path / "mlp.safetensors");
    CHECK(mlp_file.tensor("layer0.weight").dtype == SafetensorsDtype::f32);
    ddpm::nn::MlpConfig mlp_config = mlp.config();
    mlp_config.seed = 1234;
    ddpm::nn::Mlp<float> mlp_loaded(mlp_config);
    ddpm::io::load_state_dict(mlp_file, mlp_loaded);
    CHECK(std::ranges::equal(mlp_loaded.parameter_values(), mlp.parameter_values()));
    ddpm::nn::ClassifierConfig classifier_config = classifier.config();
    classifier_config.seed = 1234;
    ddpm::nn::Classifier<float> classifier_loaded(classifier_config);
    ddpm::io::load_state_dict(SafetensorsFile::load(dir.path / "classifier.safetensors"),
                              classifier_loaded);
    CHECK(std::ranges::equal(classifier_loaded.parameter_values(), classifier.parameter_values()));
  }
  SUBCASE("a flat vector in parameters() order (a checkpoint's EMA shadow)") {
    const ddpm::nn::UNetConfig config = ddpm::test::tiny_unet_config();
    const std::vector<StateDictEntry> table = ddpm::io::state_dict_table(config);
    ddpm::nn::UNet<double> model(config);
    std::vector<double> shadow(model.parameter_values().begin(), model.parameter_values().end());
    for (double& v : shadow) v = 0.5 * v + 0.125;  // not the model's own weights
    SafetensorsWriter w;
    ddpm::io::add_state_dict(w, table, std::span<const double>(shadow), SafetensorsDtype::f64);
    w.write(file);
    const SafetensorsFile loaded_file = SafetensorsFile::load(file);
    std::vector<double> back(shadow.size());
    ddpm::io::load_state_dict(loaded_file, table, std::span<double>(back));
    CHECK(back == shadow);
    ddpm::io::load_state_dict(loaded_file, model);
    CHECK(std::ranges::equal(model.parameter_values(), shadow));
    std::vector<double> too_short(shadow.size() - 1);
    CHECK_THROWS_AS(ddpm::io::load_state_dict(loaded_file, table, std::span<double>(too_short)),
                    ddpm::InvalidArgument);
    CHECK_THROWS_AS(ddpm::io::add_state_dict(w, table, std::span<const double>(too_short)),
                    ddpm::InvalidArgument);
  }
}

TEST_CASE(
    "a state_dict that does not match lists every missing, unexpected and mismatched tensor") {
  TempDir dir;
  const ddpm::nn::MlpConfig config = ddpm::test::tiny_mlp_config(3, 0, false);
  const std::vector<StateDictEntry> table = ddpm::io::state_dict_table(config);
  ddpm::nn::Mlp<double> model(config);
  const std::vector<double> before(model.parameter_values().begin(),
                                   model.parameter_values().end());
  // The model's state_dict, then: layer1.bias left out, layer0.weight transposed to [9, 8],
  // layer2.bias stored as I64, and one tensor the model does not have.
  SafetensorsWriter w;
  for (const StateDictEntry& e : table) {
    if (e.name == "layer1.bias") continue;
    std::vector<std::int64_t> shape = e.shape;
    if (e.name == "layer0.weight") std::swap(shape[0], shape[1]);
    if (e.name == "layer2.bias") {
      w.add<std::int64_t>(e.name, shape, std::vector<std::int64_t>(8, 0), SafetensorsDtype::i64);
    } else {
      w.add<double>(e.name, shape, std::vector<double>(static_cast<std::size_t>(e.numel()), 0.0));
    }
  }
  const std::vector<double> extra(4, 1.0);
  w.add<double>("module.layer9.weight", {2, 2}, std::span<const double>(extra));
  w.write(dir.path / "bad.safetensors");
  const SafetensorsFile file = SafetensorsFile::load(dir.path / "bad.safetensors");

  CHECK_THROWS_AS(ddpm::io::load_state_dict(file, model), ddpm::FormatError);
  try {
    ddpm::io::load_state_dict(file, model);
    FAIL("no StateDictError");
  } catch (const ddpm::io::StateDictError& e) {
    const std::string message = e.what();
    MESSAGE(message);
    CHECK(message.find("bad.safetensors") != std::string::npos);
    CHECK(message.find("1 missing, 1 unexpected, 2 mismatched tensors") != std::string::npos);
    CHECK(message.find("missing: layer1.bias [8]") != std::string::npos);
    CHECK(message.find("unexpected: module.layer9.weight [2, 2]") != std::string::npos);
    CHECK(message.find("mismatched: layer0.weight: file [9, 8] F32, expected [8, 9]") !=
          std::string::npos);
    CHECK(message.find("mismatched: layer2.bias: file [8] I64") != std::string::npos);
    CHECK(e.missing().size() == 1);
    CHECK(e.unexpected().size() == 1);
    CHECK(e.mismatched().size() == 2);
  }
  CHECK(std::ranges::equal(model.parameter_values(), before));  // untouched

  SUBCASE("a file of another configuration") {
    ddpm::nn::MlpConfig wider = config;
    wider.width = 9;
    ddpm::nn::Mlp<double> other(wider);
    SafetensorsWriter ok;
    ddpm::io::add_state_dict(ok, model);
    ok.write(dir.path / "narrow.safetensors");
    CHECK_THROWS_WITH_AS(
        ddpm::io::load_state_dict(SafetensorsFile::load(dir.path / "narrow.safetensors"), other),
        doctest::Contains("0 missing, 0 unexpected, 7 mismatched tensors"),
        ddpm::io::StateDictError);
  }
}

TEST_CASE("live: torch_models in PyTorch and ddpm agree both ways (needs python3-torch)") {
  const std::string python = python_with_torch();
  if (python.empty()) {
    MESSAGE("skipped: /usr/bin/python3 has no torch (apt-get install python3-torch to run it)");
    return;
  }
  TempDir dir;
  // ddpm -> torch: three ddpm-initialized models, exported with their metadata.
  ddpm::nn::UNet<double> unet(rich_unet_config());
  ddpm::nn::UNetConfig small_levels = ddpm::test::tiny_unet_config();
  small_levels.attention_resolutions = {4};
  small_levels.dropout = 0.2;
  ddpm::nn::UNet<double> unet_add(small_levels);
  ddpm::nn::Mlp<double> mlp(ddpm::test::tiny_mlp_config(6, 3, true));
  ddpm::nn::Classifier<double> classifier(ddpm::test::tiny_classifier_config());
  const auto classifier_meta = [&] {
    const ddpm::nn::ClassifierConfig& c = classifier.config();
    return std::map<std::string, std::string>{{"model.kind", "classifier"},
                                              {"model.channels", std::to_string(c.image_channels)},
                                              {"model.height", std::to_string(c.height)},
                                              {"model.width", std::to_string(c.width)},
                                              {"model.base", std::to_string(c.base_channels)},
                                              {"model.mult", "1,2"},
                                              {"model.res_blocks", std::to_string(c.res_blocks)},
                                              {"model.groups", std::to_string(c.groups)},
                                              {"model.classes", std::to_string(c.num_classes)},
                                              {"model.features", std::to_string(c.feature_dim)}};
  };
  REQUIRE(classifier.config().channel_mult == std::vector<Index>{1, 2});
  export_with_outputs(unet, metadata_of(unet.config()), dir.path / "unet.safetensors",
                      dir.path / "unet_io.safetensors", unet.input_dim(), true);
  export_with_outputs(unet_add, metadata_of(unet_add.config()), dir.path / "unet2.safetensors",
                      dir.path / "unet2_io.safetensors", unet_add.input_dim(), false);
  export_with_outputs(mlp, metadata_of(mlp.config()), dir.path / "mlp.safetensors",
                      dir.path / "mlp_io.safetensors", mlp.input_dim(), true);
  export_with_outputs(classifier, classifier_meta(), dir.path / "classifier.safetensors",
                      dir.path / "classifier_io.safetensors", classifier.input_dim(), false);
  const fs::path fresh = dir.path / "fresh";
  const fs::path log = dir.path / "log.txt";
  // One Python start (importing torch takes seconds): check ddpm's exports, then write fresh
  // fixtures from another seed than the committed ones for the torch -> ddpm direction.
  std::string command = "OMP_NUM_THREADS=1 " + python + " '" + kScript.string() +
                        "' --seed 7 --out '" + fresh.string() + "' --check";
  for (const char* name : {"unet", "unet2", "mlp", "classifier"}) {
    command += " '" + (dir.path / (std::string(name) + ".safetensors")).string() + "' '" +
               (dir.path / (std::string(name) + "_io.safetensors")).string() + "'";
  }
  command += " > '" + log.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  const std::string output = slurp(log);
  MESSAGE(output);
  REQUIRE_MESSAGE(status == 0, "python output: " << output);
  check_fixtures<double>(fresh);
}

}  // namespace state_dict_test
