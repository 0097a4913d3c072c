// SPDX-License-Identifier: MIT
// Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/): files from the library's
// own writers plus hand-made variants, so that every field of every format is reached from the
// start. Run from the repository root:
//   build/<dir>/tests/fuzz/ddpm_fuzz_make_corpus tests/fuzz/corpus
// Deterministic: the same build writes the same bytes.
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "ddpm/data/idx.hpp"
#include "ddpm/data/images.hpp"
#include "ddpm/io/csv.hpp"
#include "ddpm/io/npy.hpp"
#include "ddpm/io/png.hpp"
#include "ddpm/io/pointcloud.hpp"
#include "ddpm/io/safetensors.hpp"
#include "ddpm/io/state_dict.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/train/checkpoint.hpp"
#include "ddpm/train/model_fields.hpp"
#include "ddpm/train/pointcloud_run.hpp"
#include "ddpm/train/run_config.hpp"
#include "fuzz_models.hpp"

namespace fs = std::filesystem;
using Bytes = std::string;

namespace {

fs::path out_root;

void put(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path dir = out_root / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

Bytes slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs a path writer into a scratch file and returns the bytes.
template <class Write>
Bytes via_file(const std::string& extension, Write&& write) {
  const fs::path path = fs::temp_directory_path() / ("ddpm_make_corpus" + extension);
  write(path);
  Bytes bytes = slurp(path);
  fs::remove(path);
  return bytes;
}

template <class T>
void le(Bytes& out, T value) {
  ddpm::train::detail::put_le<T>(out, value);
}
template <class T>
void be(Bytes& out, T value) {
  Bytes raw;
  ddpm::train::detail::put_le<T>(raw, value);
  out.append(raw.rbegin(), raw.rend());
}

// ---- checkpoints --------------------------------------------------------------------------------

template <class Config>
ddpm::train::Checkpoint run_checkpoint(const ddpm::train::RunConfig<Config>& run) {
  ddpm::train::Checkpoint c;
  run.to_checkpoint(c);
  c.set("step", "12");
  const std::vector<double> w = {0.5, -1.25, 3.0};
  c.put<double>("model.layer.weight", std::span<const double>(w));
  c.put<float>("ema.shadow", std::span<const float>(std::vector<float>{0.5f, -1.25f, 3.0f}));
  c.put_integers("rng.counters", std::vector<std::int64_t>{1, -2, 1LL << 40});
  return c;
}

void checkpoint_seed(const std::string& name, const ddpm::train::Checkpoint& c) {
  const Bytes file = c.serialize();
  put("checkpoint", name + ".raw", Bytes(1, '\0') + file);  // "0": the file as it is
  // "1": only the payload (the target adds header and CRC).
  put("checkpoint", name + ".payload", "\x01" + file.substr(20, file.size() - 24));
}

void checkpoints() {
  ddpm::train::RunConfig<ddpm::nn::MlpConfig> mlp;
  mlp.diffusion.schedule = ddpm::train::ScheduleConfig::linear(24);
  mlp.model = ddpm::fuzz::tiny_mlp_config();
  mlp.data.name = "file";
  mlp.data.path = "/data/points.csv";
  mlp.data.rows = 100;
  mlp.data.fingerprint = "0badcafe";
  mlp.data.mean = {0.5, -1.0};
  mlp.data.scale = {2.0, 0.25};
  mlp.data.frame = {-4, 4, -3, 3};
  checkpoint_seed("mlp_linear", run_checkpoint(mlp));

  ddpm::train::RunConfig<ddpm::nn::UNetConfig> unet;
  unet.diffusion.schedule = ddpm::train::ScheduleConfig::cosine(6);
  unet.diffusion.schedule.respacing = {0, 2, 5};
  unet.diffusion.options.variance = ddpm::VarianceKind::learned_range;
  unet.diffusion.options.loss = ddpm::LossKind::hybrid;
  unet.diffusion.options.snr_weighting = ddpm::SnrWeighting::min_snr;
  unet.diffusion.options.snr_gamma = 5.0;
  unet.model.height = unet.model.width = 8;
  unet.model.output_channels = 2;
  unet.model.attention_resolutions = {4};
  unet.data.name = "fashion-mnist";
  checkpoint_seed("unet_cosine", run_checkpoint(unet));

  ddpm::train::RunConfig<ddpm::nn::PointCloudModelConfig> cloud;
  cloud.diffusion.schedule = ddpm::train::ScheduleConfig::custom({0.01, 0.02, 0.05, 0.1});
  cloud.diffusion.schedule.zero_terminal_snr = true;
  cloud.model.points_per_shape = 16;
  cloud.data.name = "shapes";
  checkpoint_seed("pointcloud_custom", run_checkpoint(cloud));

  ddpm::train::Checkpoint bare;  // no run description; tensors of rank 0 and 3
  bare.set("format", "ddpm trainer 1");
  checkpoint_seed("bare", bare);
  put("checkpoint", "garbage.raw", Bytes("\x00", 1) + "DDPMCKPT\x01");
}

// ---- safetensors --------------------------------------------------------------------------------

void safetensors() {
  using ddpm::io::SafetensorsDtype;
  const auto write = [](const std::string& name, auto&& fill) {
    ddpm::io::SafetensorsWriter w;
    fill(w);
    put("safetensors", name, via_file(".safetensors", [&](const fs::path& p) { w.write(p); }));
  };
  write("mlp_f32.safetensors", [](ddpm::io::SafetensorsWriter& w) {
    ddpm::nn::Mlp<double> model(ddpm::fuzz::tiny_mlp_config());
    w.set_metadata("format", "pt");
    ddpm::io::add_state_dict(w, model);
  });
  write("mlp_bf16.safetensors", [](ddpm::io::SafetensorsWriter& w) {
    ddpm::nn::Mlp<double> model(ddpm::fuzz::tiny_mlp_config());
    ddpm::io::add_state_dict(w, model, SafetensorsDtype::bf16);
  });
  const std::vector<double> reals = {0.0, -1.5, 3.25, 1e-3, 65504.0, -0.0};
  const std::vector<std::int64_t> ints = {0, 1, -1, 127, -128, 1};
  write("every_dtype.safetensors", [&](ddpm::io::SafetensorsWriter& w) {
    w.set_metadata("note", "every dtype");
    w.add<double>("f64", {2, 3}, reals, SafetensorsDtype::f64);
    w.add<double>("f32", {6}, reals, SafetensorsDtype::f32);
    w.add<double>("f16", {3, 2}, reals, SafetensorsDtype::f16);
    w.add<double>("bf16", {1, 6}, reals, SafetensorsDtype::bf16);
    w.add<std::int64_t>("i64", {6}, ints, SafetensorsDtype::i64);
    w.add<std::int64_t>("i32", {6}, ints, SafetensorsDtype::i32);
    w.add<std::int64_t>("i16", {6}, ints, SafetensorsDtype::i16);
    w.add<std::int64_t>("i8", {6}, ints, SafetensorsDtype::i8);
    w.add<std::int64_t>("u8", {2, 3}, std::vector<std::int64_t>{0, 1, 2, 3, 4, 255},
                        SafetensorsDtype::u8);
    w.add<std::int64_t>("bool", {6}, std::vector<std::int64_t>{0, 1, 1, 0, 1, 0},
                        SafetensorsDtype::boolean);
    w.add<double>("scalar", {}, std::vector<double>{2.5}, SafetensorsDtype::f64);
    w.add<double>("empty", {0, 4}, std::vector<double>{}, SafetensorsDtype::f32);
  });
  // Hand-made: a header with unusual JSON (escapes, spaces, padding) and trailing bytes.
  const std::string header =
      R"({ "__metadata__" : {"a\u00e9" : "x\"y"}, "t" : {"dtype":"F32", "shape":[1,2],)"
      R"( "data_offsets":[0, 8]}}   )";
  Bytes file;
  le<std::uint64_t>(file, header.size());
  file += header;
  le<float>(file, 1.5f);
  le<float>(file, -2.0f);
  file += "tail";
  put("safetensors", "handmade.safetensors", file);
}

// ---- .npy ---------------------------------------------------------------------------------------

Bytes npy_file(const std::string& dict, const Bytes& data, int major = 1) {
  Bytes header = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  Bytes file = "\x93NUMPY";
  file += static_cast<char>(major);
  file += '\0';
  if (major == 1) {
    le<std::uint16_t>(file, static_cast<std::uint16_t>(header.size()));
  } else {
    le<std::uint32_t>(file, static_cast<std::uint32_t>(header.size()));
  }
  return file + header + data;
}

void npys() {
  const auto write = [](const std::string& name, const std::vector<std::uint64_t>& shape,
                        auto values) {
    put("npy", name, via_file(".npy", [&](const fs::path& p) {
          ddpm::io::write_npy(p, shape,
                              std::span<const typename decltype(values)::value_type>(values));
        }));
  };
  std::vector<double> points(2 * 6);
  for (std::size_t i = 0; i < points.size(); ++i) points[i] = 0.25 * static_cast<double>(i) - 1;
  write("points_f64.npy", {6, 2}, points);
  write("points_f32.npy", {6, 2}, std::vector<float>(points.begin(), points.end()));
  write("clouds_f32.npy", {2, 3, 3}, std::vector<float>(18, 0.5f));
  write("images_u8_nhw.npy", {2, 2, 3},
        std::vector<std::uint8_t>{0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255});
  write("images_u8_nchw.npy", {1, 3, 2, 2}, std::vector<std::uint8_t>(12, 128));
  write("images_f32.npy", {1, 1, 2, 2}, std::vector<float>{-1.0f, 0.0f, 0.5f, 1.0f});
  write("vector_u8.npy", {5}, std::vector<std::uint8_t>{1, 2, 3, 4, 5});
  write("rank5_f64.npy", {1, 1, 1, 1, 2}, std::vector<double>{1, 2});
  // Hand-made headers: every key order and spelling read_npy accepts or must refuse.
  Bytes d8;
  le<double>(d8, 1.0);
  le<double>(d8, -2.0);
  put("npy", "scalar.npy",
      npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", d8.substr(0, 8)));
  put("npy", "order.npy",
      npy_file("{\"shape\": (1, 2), \"fortran_order\": False, \"descr\": \"<f8\"}", d8));
  put("npy", "fortran.npy",
      npy_file("{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }", d8));
  put("npy", "big_endian.npy",
      npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", d8));
  put("npy", "version2.npy",
      npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", d8, 2));
  put("npy", "version3.npy",
      npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }", d8, 3));
  put("npy", "int.npy", npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", d8));
  put("npy", "u1.npy",
      npy_file("{'descr': 'u1', 'fortran_order': False, 'shape': (2L,), }", Bytes("\x07\x08")));
}

// ---- IDX ----------------------------------------------------------------------------------------

void idxs() {
  ddpm::data::IdxArray images{{2, 3, 3}, {}};
  for (int i = 0; i < 18; ++i) images.values.push_back(static_cast<std::uint8_t>(i * 14));
  ddpm::data::IdxArray labels{{4}, {0, 9, 3, 3}};
  const auto file = [](const ddpm::data::IdxArray& a, bool gzip) {
    return via_file(".idx", [&](const fs::path& p) { ddpm::data::write_idx(p, a, gzip); });
  };
  // The first byte: 0 the file as it is, 1 gzip it, 3 gzip it as two members.
  for (const auto& [name, array] : {std::pair{"images", images}, std::pair{"labels", labels}}) {
    put("idx", std::string(name) + ".raw", Bytes(1, '\0') + file(array, false));
    put("idx", std::string(name) + ".gz", Bytes(1, '\0') + file(array, true));
    put("idx", std::string(name) + ".to_gzip", "\x01" + file(array, false));
    put("idx", std::string(name) + ".to_gzip2", "\x03" + file(array, false));
  }
  // Hand-made: other type codes (refused) and a 4-D array.
  Bytes other = Bytes("\x00", 1) + Bytes("\x00\x00\x0D\x01", 4);
  be<std::uint32_t>(other, 2);
  le<float>(other, 1.0f);
  le<float>(other, 2.0f);
  put("idx", "float.raw", other);
  Bytes four = Bytes("\x00", 1) + Bytes("\x00\x00\x08\x04", 4);
  for (int d = 0; d < 4; ++d) be<std::uint32_t>(four, 1);
  four += '\x2A';
  put("idx", "rank4.raw", four);
}

// ---- CSV ----------------------------------------------------------------------------------------

void csvs() {
  Eigen::MatrixXd m(4, 2);
  m << 0.5, -1, 2, 3.25, -4e-3, 1e10, 7, 8;
  put("csv", "written.csv", via_file(".csv", [&](const fs::path& p) {
        ddpm::io::write_csv(p, m, {"x", "y"});
      }));
  put("csv", "three.csv", "a,b,c\n1,2,3\n4,5,6\n7,8,9\n10,11,12\n");
  put("csv", "bom_crlf_quotes.csv",
      "\xEF\xBB\xBF\"x\", \"y\"\r\n1.5 , -2\r\n3,4e-2\r\n+5,.5\r\n6,7\r\n\r\n");
  put("csv", "blank_then_data.csv", "x,y\n1,2\n\n3,4\n");
  put("csv", "bad_values.csv", "x,y\n1,nan\ninf,2\n1e999,3\n,4\nabc,5\n");
  put("csv", "numbers_header.csv", "1,2\n3,4\n");
  put("csv", "one_column.csv", "value\n1\n2\n3\n4\n");
}

// ---- images -------------------------------------------------------------------------------------

Bytes png_chunk(const char* type, const Bytes& data) {
  Bytes chunk;
  be<std::uint32_t>(chunk, static_cast<std::uint32_t>(data.size()));
  const Bytes body = std::string(type, 4) + data;
  chunk += body;
  be<std::uint32_t>(chunk,
                    static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                                                     static_cast<uInt>(body.size()))));
  return chunk;
}

/// A PNG of the given IHDR fields whose scanlines (filter bytes included) are `raw`.
Bytes png(std::uint32_t width, std::uint32_t height, int depth, int color, int interlace,
          const Bytes& raw, const Bytes& extra = {}) {
  Bytes ihdr;
  be<std::uint32_t>(ihdr, width);
  be<std::uint32_t>(ihdr, height);
  ihdr += static_cast<char>(depth);
  ihdr += static_cast<char>(color);
  ihdr += '\0';
  ihdr += '\0';
  ihdr += static_cast<char>(interlace);
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  Bytes z(size, '\0');
  compress2(reinterpret_cast<Bytef*>(z.data()), &size, reinterpret_cast<const Bytef*>(raw.data()),
            static_cast<uLong>(raw.size()), 9);
  z.resize(size);
  return "\x89PNG\r\n\x1a\n" + png_chunk("IHDR", ihdr) + extra + png_chunk("IDAT", z) +
         png_chunk("IEND", "");
}

void images() {
  for (const int channels : {1, 3}) {
    ddpm::io::Image image = ddpm::io::Image::filled(5, 3, channels, 10);
    for (std::size_t i = 0; i < image.pixels.size(); ++i) {
      image.pixels[i] = static_cast<std::uint8_t>(i * 37);
    }
    const std::vector<std::uint8_t> bytes = ddpm::io::encode_png(image);
    put("image", channels == 1 ? "gray.png" : "rgb.png", Bytes(bytes.begin(), bytes.end()));
    // JPEG, baseline, from stb_image_write (compiled in by ddpm/io/png.hpp).
    Bytes jpeg;
    stbi_write_jpg_to_func(
        [](void* context, void* data, int n) {
          static_cast<Bytes*>(context)->append(static_cast<const char*>(data),
                                               static_cast<std::size_t>(n));
        },
        &jpeg, image.width, image.height, channels, image.pixels.data(), 90);
    put("image", channels == 1 ? "gray.jpg" : "rgb.jpg", jpeg);
  }
  // Hand-made PNGs: what stb_image_write never writes. Rows start with a filter byte (0..4).
  put("image", "rgba.png",
      png(2, 2, 8, 6, 0,
          Bytes("\x00\x01\x02\x03\x04\x05\x06\x07\x08"
                "\x01\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10",
                18)));
  put("image", "gray16.png",
      png(2, 2, 16, 0, 0, Bytes("\x02\x00\x01\x80\x00\x03\x12\x34\x56\x78", 10)));
  put("image", "rgb16.png",
      png(1, 2, 16, 2, 0,
          Bytes("\x00\x01\x02\x03\x04\x05\x06"
                "\x04\x07\x08\x09\x0a\x0b\x0c",
                14)));
  put("image", "gray_alpha.png", png(2, 1, 8, 4, 0, Bytes("\x00\x10\x20\x30\x40", 5)));
  put("image", "gray1bit.png", png(9, 2, 1, 0, 0, Bytes("\x00\xA5\x80\x00\x5A\x00", 6)));
  put("image", "palette.png",
      png(3, 1, 8, 3, 0, Bytes("\x00\x00\x01\x02", 4),
          png_chunk("PLTE", Bytes("\xFF\x00\x00\x00\xFF\x00\x00\x00\xFF", 9)) +
              png_chunk("tRNS", Bytes("\x80", 1))));
  put("image", "interlaced.png", png(1, 1, 8, 2, 1, Bytes("\x00\x11\x22\x33", 4)));
}

// ---- point clouds -------------------------------------------------------------------------------

void clouds() {
  Eigen::MatrixXd cloud(5, 3);
  cloud << 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, -0.25, 2;
  put("ply", "binary.ply", via_file(".ply", [&](const fs::path& p) {
        ddpm::io::write_ply(p, cloud, ddpm::io::PlyEncoding::binary);
      }));
  put("ply", "ascii.ply", via_file(".ply", [&](const fs::path& p) {
        ddpm::io::write_ply(p, cloud, ddpm::io::PlyEncoding::ascii);
      }));
  // Every property type, a list, an element before the vertices and one after.
  const std::string head =
      "ply\nformat binary_little_endian 1.0\ncomment every type\nobj_info fuzz\n"
      "element camera 1\nproperty uchar a\nproperty list uchar int b\n"
      "element vertex 2\nproperty char c\nproperty short s\nproperty ushort us\n"
      "property int32 i\nproperty uint ui\nproperty double x\nproperty float32 y\n"
      "property float64 z\nproperty uint8 u8\nproperty int8 i8\nproperty int16 i16\n"
      "property uint16 u16\nproperty uint32 u32\nproperty float f\nproperty int in\n"
      "element face 1\nproperty list uchar uint vertex_indices\nend_header\n";
  Bytes body;
  body += '\x07';  // camera: a, then a list of 2 ints
  body += '\x02';
  le<std::int32_t>(body, 1);
  le<std::int32_t>(body, -1);
  for (int v = 0; v < 2; ++v) {
    body += '\xF0';
    le<std::int16_t>(body, -3);
    le<std::uint16_t>(body, 60000);
    le<std::int32_t>(body, -70000);
    le<std::uint32_t>(body, 4000000000u);
    le<double>(body, 0.5 + v);
    le<float>(body, -1.5f);
    le<double>(body, 2.25);
    body += '\xFF';
    body += '\x80';
    le<std::int16_t>(body, 5);
    le<std::uint16_t>(body, 6);
    le<std::uint32_t>(body, 7);
    le<float>(body, 8.0f);
    le<std::int32_t>(body, 9);
  }
  body += '\x03';
  for (const std::uint32_t i : {0u, 1u, 1u}) le<std::uint32_t>(body, i);
  put("ply", "every_type.ply", head + body);
  put("ply", "ascii_lists.ply",
      "ply\r\nformat ascii 1.0\r\nelement vertex 3\r\nproperty float x\r\nproperty float y\r\n"
      "property float z\r\nproperty uchar red\r\nelement face 1\r\n"
      "property list uchar int vertex_indices\r\nend_header\r\n0 0 0 255\r\n1 0 0 0\r\n"
      "0 1 0 7\r\n3 0 1 2\r\n");
  put("ply", "big_endian.ply",
      "ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
      "property float z\nend_header\n" +
          Bytes("\x3f\x80\0\0\0\0\0\0\0\0\0\0", 12));

  put("xyz", "plain.xyz", "0 0 0\n1 0 0\n0 1 0\n0 0 1\n0.5 -0.25 2\n");
  put("xyz", "comments.xyz",
      "# x y z nx ny nz\n1,2,3,0,0,1\n\n  4\t5\t6 # trailing\r\n7,8,9\n-1e-3 +2.5 .5 255 0 0\n");
  put("xyz", "bad.xyz", "1 2\n3 nan 4\n5 6 inf\n1e400 0 0\nx y z\n");

  put("off", "tetra.off",
      "OFF\n4 4 6\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n"
      "3 0 2 3\n3 1 2 3\n");
  put("off", "colored_quad.off",
      "COFF\n# a colored quad\n4 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n1 1 0 0 0 255 255\n"
      "0 1 0 9 9 9 255\n4 0 1 2 3 200 100 50\n");
  put("off", "same_line.off", "OFF 3 1 0\n0 0 0\n2 0 0\n0 2 0\n3 0 1 2\n");
  put("off", "noff.off",
      "NOFF\r\n3 1 0\r\n0 0 0 0 0 1\r\n1 0 0 0 0 1\r\n0 1 0 0 0 1\r\n"
      "3 2 1 0\r\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  out_root = argv[1];
  checkpoints();
  safetensors();
  npys();
  idxs();
  csvs();
  images();
  clouds();
  return 0;
}
