// SPDX-License-Identifier: MIT
// Tests of ddpm/data/images.hpp: MNIST-format folders, image folders (exact PNG round trips, class
// subfolders, resizing, broken files), .npy images, the load_images dispatch and training batches.
#include "ddpm/data/images.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/denoiser.hpp"
#include "ddpm/io/plot.hpp"
#include "ddpm/io/png.hpp"
#include "support.hpp"

namespace images_test {

namespace {

namespace fs = std::filesystem;
using ddpm::Batch;
using ddpm::FormatError;
using ddpm::Index;
using ddpm::data::IdxArray;
using ddpm::data::ImageSet;
using ddpm::io::Image;
using ddpm::test::TempDir;

/// A width x height image whose bytes differ from their neighbours and between seeds.
Image pattern(int width, int height, int channels, int seed) {
  Image image = Image::filled(width, height, channels);
  for (std::size_t i = 0; i < image.pixels.size(); ++i) {
    image.pixels[i] =
        static_cast<std::uint8_t>((i * 37 + static_cast<std::size_t>(seed) * 53) % 256);
  }
  return image;
}

/// Writes `image` as a PNG without write_png's fsync (which only slows tests down).
fs::path save_png(const TempDir& dir, const std::string& name, const Image& image) {
  const std::vector<std::uint8_t> bytes = ddpm::io::encode_png(image);
  return dir.write(name, std::string(bytes.begin(), bytes.end()));
}

/// The bytes of `image` in planar order (all of channel 0, then channel 1, ...).
std::vector<std::uint8_t> planar(const Image& image) {
  std::vector<std::uint8_t> out;
  for (int c = 0; c < image.channels; ++c) {
    for (int y = 0; y < image.height; ++y) {
      for (int x = 0; x < image.width; ++x) out.push_back(image.at(x, y, c));
    }
  }
  return out;
}

/// Row i of the set as bytes.
std::vector<std::uint8_t> row_bytes(const ImageSet& set, Index i) {
  return ddpm::data::to_bytes(Batch<float>(set.images.row(i)));
}

/// Expects f() to throw FormatError whose message contains every one of `parts`.
template <class F>
void check_format_error(F&& f, std::initializer_list<std::string> parts) {
  std::string message;
  CHECK_THROWS_AS(f(), FormatError);
  try {
    f();
  } catch (const FormatError& e) {
    message = e.what();
  }
  CAPTURE(message);
  for (const std::string& part : parts) CHECK(message.find(part) != std::string::npos);
}

/// A small labelled image set for batch tests: image i has every element distinct from every
/// other image's, and label i % 3.
ImageSet small_set(Index n, Index channels, Index height, Index width) {
  ImageSet set;
  set.channels = channels;
  set.height = height;
  set.width = width;
  set.images.resize(n, channels * height * width);
  for (Index i = 0; i < n; ++i) {
    set.labels.push_back(static_cast<int>(i % 3));
    for (Index k = 0; k < set.images.cols(); ++k) {
      set.images(i, k) = static_cast<float>(i * 1000 + k);
    }
  }
  set.num_classes = 3;
  return set;
}

/// The image mirrored left-right, computed pixel by pixel.
Batch<float> mirrored(const ImageSet& set, Index i) {
  Batch<float> out(1, set.images.cols());
  for (Index c = 0; c < set.channels; ++c) {
    for (Index y = 0; y < set.height; ++y) {
      for (Index x = 0; x < set.width; ++x) {
        out(0, (c * set.height + y) * set.width + x) =
            set.images(i, (c * set.height + y) * set.width + (set.width - 1 - x));
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("bytes map to [-1, 1] and back exactly, and to_bytes clamps and rounds") {
  for (int b = 0; b < 256; ++b) {
    const float x = ddpm::data::detail::byte_to_unit(static_cast<std::uint8_t>(b));
    CHECK(x >= -1.0f);
    CHECK(x <= 1.0f);
    CHECK(ddpm::data::detail::unit_to_byte(x) == b);
  }
  Batch<double> values(1, 6);
  values << -2.0, 2.0, std::numeric_limits<double>::quiet_NaN(), 0.0, -1.0, 1.0;
  CHECK(ddpm::data::to_bytes(values) == std::vector<std::uint8_t>{0, 255, 0, 128, 0, 255});
}

TEST_CASE("read_idx_images scales bytes to [-1, 1] and reads the labels") {
  TempDir dir;
  IdxArray images{{3, 2, 4}, {}};
  for (std::uint8_t i = 0; i < 24; ++i) images.values.push_back(static_cast<std::uint8_t>(i * 11));
  ddpm::data::write_idx(dir.path / "images", images);
  ddpm::data::write_idx(dir.path / "labels", IdxArray{{3}, {2, 0, 7}});

  const ImageSet set = ddpm::data::read_idx_images(dir.path / "images", dir.path / "labels");
  CHECK(set.images.rows() == 3);
  CHECK(set.images.cols() == 8);
  CHECK(set.height == 2);
  CHECK(set.width == 4);
  CHECK(set.channels == 1);
  for (Index k = 0; k < 24; ++k) {
    CHECK(set.images.data()[k] == static_cast<float>(images.values[k] / 127.5 - 1.0));
  }
  CHECK(ddpm::data::to_bytes(set.images) == images.values);
  CHECK(set.labels == std::vector<int>{2, 0, 7});
  CHECK(set.num_classes == 8);

  SUBCASE("without labels the set is unlabeled") {
    const ImageSet unlabeled = ddpm::data::read_idx_images(dir.path / "images");
    CHECK(unlabeled.labels.empty());
    CHECK(unlabeled.num_classes == 0);
  }
  SUBCASE("labels must be one per image, and images 3-D") {
    ddpm::data::write_idx(dir.path / "two", IdxArray{{2}, {1, 1}});
    check_format_error(
        [&] { (void)ddpm::data::read_idx_images(dir.path / "images", dir.path / "two"); },
        {"'" + (dir.path / "two").string() + "' hold 2 labels",
         "'" + (dir.path / "images").string() + "' hold 3 images"});
    check_format_error(
        [&] { (void)ddpm::data::read_idx_images(dir.path / "images", dir.path / "images"); },
        {"labels need 1"});
    check_format_error(
        [&] { (void)ddpm::data::read_idx_images(dir.path / "labels", dir.path / "labels"); },
        {"'" + (dir.path / "labels").string() + "'", "images need 3"});
  }
}

TEST_CASE("load_mnist_format reads the train or test split of an MNIST-format folder") {
  TempDir dir;
  const bool gzip =
#ifdef DDPM_HAVE_ZLIB
      true;
#else
      false;
#endif
  ddpm::data::write_idx(
      dir.path / (gzip ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte"),
      IdxArray{{2, 3, 3}, std::vector<std::uint8_t>(18, 255)}, gzip);
  ddpm::data::write_idx(dir.path / "train-labels-idx1-ubyte", IdxArray{{2}, {1, 0}});
  ddpm::data::write_idx(dir.path / "t10k-images-idx3-ubyte",
                        IdxArray{{1, 3, 3}, std::vector<std::uint8_t>(9, 0)});

  const ImageSet train = ddpm::data::load_mnist_format(dir.path, "train");
  CHECK(train.images.rows() == 2);
  CHECK((train.images.array() == 1.0f).all());
  CHECK(train.labels == std::vector<int>{1, 0});
  CHECK(train.num_classes == 2);
  const ImageSet test = ddpm::data::load_mnist_format(dir.path, "test");
  CHECK(test.images.rows() == 1);
  CHECK((test.images.array() == -1.0f).all());
  CHECK(test.labels.empty());  // no t10k labels file: unlabeled

  DDPM_CHECK_INVALID("split", ddpm::data::load_mnist_format(dir.path, "validation"));
  check_format_error([&] { (void)ddpm::data::load_mnist_format(dir.path / "missing", "train"); },
                     {"train-images-idx3-ubyte[.gz] not found",
                      "install the Debian package dataset-fashion-mnist (apt-get install "
                      "dataset-fashion-mnist) or pass --data"});
}

TEST_CASE("Fashion-MNIST's test split loads as 28x28 gray images with 10 classes") {
  // Only the test split: converting the 60000 training images costs ~190 MB of fresh memory for
  // the same code path (idx_test.cpp reads the training files).
  const fs::path dir = ddpm::data::kFashionMnistDir;
  if (!fs::exists(dir / "t10k-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: install the Debian package dataset-fashion-mnist to run this test");
    return;
  }
#ifndef DDPM_HAVE_ZLIB
  MESSAGE("skipped: the Debian files are gzip-compressed and ddpm was built without zlib");
  return;
#endif
  const ImageSet test = ddpm::data::load_mnist_format(dir, "test");
  CHECK(test.images.rows() == 10000);
  CHECK(test.images.cols() == 784);
  CHECK(test.height == 28);
  CHECK(test.width == 28);
  CHECK(test.channels == 1);
  CHECK(test.num_classes == 10);
  REQUIRE(test.labels.size() == 10000);
  CHECK(test.labels[0] == 9);  // the first test image is an ankle boot, as in the training set
  CHECK(*std::min_element(test.labels.begin(), test.labels.end()) == 0);
  const std::vector<std::uint8_t> bytes = ddpm::data::to_bytes(test.images);
  CHECK(*std::min_element(bytes.begin(), bytes.end()) == 0);
  CHECK(*std::max_element(bytes.begin(), bytes.end()) == 255);
}

TEST_CASE("read_image_folder reads PNGs back exactly, in file-name order") {
  TempDir dir;
  const Image b = pattern(8, 8, 1, 2), a = pattern(8, 8, 1, 1), c = pattern(8, 8, 1, 3);
  save_png(dir, "b.png", b);
  save_png(dir, "a.PNG", a);
  save_png(dir, "c.png", c);
  dir.write("notes.txt", "not an image");
  save_png(dir, ".hidden.png", pattern(3, 3, 3, 0));  // hidden files are skipped
  fs::create_directories(dir.path / "empty");         // a folder without images is no class

  const ImageSet set = ddpm::data::read_image_folder(dir.path);
  REQUIRE(set.images.rows() == 3);
  CHECK(set.height == 8);
  CHECK(set.width == 8);
  CHECK(set.channels == 1);
  CHECK(set.labels.empty());
  CHECK(set.num_classes == 0);
  CHECK(row_bytes(set, 0) == planar(a));
  CHECK(row_bytes(set, 1) == planar(b));
  CHECK(row_bytes(set, 2) == planar(c));

  SUBCASE("RGB files read back exactly, planar") {
    TempDir rgb;
    const Image p = pattern(8, 8, 3, 4), q = pattern(8, 8, 3, 5);
    save_png(rgb, "p.png", p);
    save_png(rgb, "q.png", q);
    const ImageSet colored = ddpm::data::read_image_folder(rgb.path);
    CHECK(colored.channels == 3);
    CHECK(colored.images.cols() == 3 * 64);
    CHECK(row_bytes(colored, 0) == planar(p));
    CHECK(row_bytes(colored, 1) == planar(q));
  }
  SUBCASE("channels converts: gray to three equal planes, gray-valued RGB to the same gray") {
    const ImageSet three = ddpm::data::read_image_folder(dir.path, 0, 0, 3);
    CHECK(three.channels == 3);
    const std::vector<std::uint8_t> gray = planar(a);
    std::vector<std::uint8_t> expected = gray;
    expected.insert(expected.end(), gray.begin(), gray.end());
    expected.insert(expected.end(), gray.begin(), gray.end());
    CHECK(row_bytes(three, 0) == expected);

    TempDir rgb;
    Image g = Image::filled(8, 8, 3);
    for (std::size_t i = 0; i < g.pixels.size(); ++i) {
      g.pixels[i] = static_cast<std::uint8_t>(i / 3 * 4);  // r = g = b
    }
    save_png(rgb, "g.png", g);
    const ImageSet one = ddpm::data::read_image_folder(rgb.path, 0, 0, 1);
    CHECK(one.channels == 1);
    for (Index p = 0; p < 64; ++p) CHECK(row_bytes(one, 0)[p] == p * 4);
  }
}

TEST_CASE("a JPEG file reads with its size and nearly its values") {
  TempDir dir;
  std::string jpeg;
  const Image gray = Image::filled(8, 8, 1, 100);
  stbi_write_func* append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  REQUIRE(stbi_write_jpg_to_func(append, &jpeg, 8, 8, 1, gray.pixels.data(), 100) != 0);
  dir.write("photo.jpg", jpeg);
  // stb's JPEG writer always stores three components (YCbCr), so the file reads as RGB.
  const ImageSet set = ddpm::data::read_image_folder(dir.path);
  REQUIRE(set.images.rows() == 1);
  CHECK(set.channels == 3);
  CHECK(set.height == 8);
  CHECK(set.width == 8);
  for (const std::uint8_t v : row_bytes(set, 0)) CHECK(std::abs(v - 100) <= 2);  // lossy codec
  const ImageSet gray_set = ddpm::data::read_image_folder(dir.path, 0, 0, 1);
  CHECK(gray_set.channels == 1);
  for (const std::uint8_t v : row_bytes(gray_set, 0)) CHECK(std::abs(v - 100) <= 2);
}

TEST_CASE("read_image_folder rejects another size naming the file, unless it resizes") {
  TempDir dir;
  save_png(dir, "a.png", pattern(8, 8, 1, 1));
  const fs::path odd = save_png(dir, "b.png", Image::filled(10, 6, 1, 77));
  check_format_error(
      [&] { (void)ddpm::data::read_image_folder(dir.path); },
      {"'" + odd.string() + "'", "is 6x10 (height x width), expected 8x8", "like the first image"});

  SUBCASE("resize makes every image the first one's size; a constant image stays constant") {
    const ImageSet set = ddpm::data::read_image_folder(dir.path, 0, 0, 0, true);
    CHECK(set.images.cols() == 64);
    CHECK(row_bytes(set, 0) == planar(pattern(8, 8, 1, 1)));
    CHECK(row_bytes(set, 1) == std::vector<std::uint8_t>(64, 77));
  }
  SUBCASE("a requested size applies to every file") {
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path, 4, 4); },
                       {"is 8x8 (height x width), expected 4x4 as requested"});
    const ImageSet small = ddpm::data::read_image_folder(dir.path, 4, 4, 0, true);
    CHECK(small.height == 4);
    CHECK(small.width == 4);
    CHECK(row_bytes(small, 1) == std::vector<std::uint8_t>(16, 77));
  }
  SUBCASE("enlarging interpolates bilinearly between pixel centers") {
    TempDir two;
    Image columns = Image::filled(2, 2, 1, 0);
    columns.at(1, 0) = columns.at(1, 1) = 200;
    save_png(two, "c.png", columns);
    // Output centers 0.25, 0.75, 1.25, 1.75 against input centers 0.5 and 1.5; the outer ones
    // clamp to the edge pixels.
    const ImageSet big = ddpm::data::read_image_folder(two.path, 4, 4, 0, true);
    const std::vector<std::uint8_t> row = {0, 50, 150, 200};
    std::vector<std::uint8_t> expected;
    for (int y = 0; y < 4; ++y) expected.insert(expected.end(), row.begin(), row.end());
    CHECK(row_bytes(big, 0) == expected);
  }
}

TEST_CASE("class subfolders of read_image_folder give labels in sorted folder order") {
  TempDir dir;
  fs::create_directories(dir.path / "dog");
  fs::create_directories(dir.path / "cat");
  save_png(dir, "dog/1.png", pattern(4, 4, 1, 3));
  save_png(dir, "cat/2.png", pattern(4, 4, 1, 2));
  save_png(dir, "cat/1.png", pattern(4, 4, 1, 1));

  const ImageSet set = ddpm::data::read_image_folder(dir.path);
  CHECK(set.labels == std::vector<int>{0, 0, 1});
  CHECK(set.num_classes == 2);
  CHECK(row_bytes(set, 0) == planar(pattern(4, 4, 1, 1)));
  CHECK(row_bytes(set, 2) == planar(pattern(4, 4, 1, 3)));

  SUBCASE("images next to class folders are an error") {
    save_png(dir, "stray.png", pattern(4, 4, 1, 4));
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path); },
                       {"'stray.png', ...) next to class subfolders"});
  }
  SUBCASE("a class folder without images is an error") {
    fs::create_directories(dir.path / "emu");
    dir.write("emu/readme.txt", "no pictures");
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path); },
                       {"class folder 'emu' has no PNG/JPEG images"});
  }
}

TEST_CASE("read_image_folder refuses broken files, empty folders and bad arguments") {
  TempDir dir;
  const Image good = pattern(8, 8, 3, 1);
  save_png(dir, "a.png", good);

  SUBCASE("a text file named .png, naming it") {
    const fs::path bad = dir.write("b.png", "this is not a PNG file");
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path); },
                       {"'" + bad.string() + "'", "cannot be decoded"});
  }
  SUBCASE("a truncated PNG, naming it") {
    const std::vector<std::uint8_t> bytes = ddpm::io::encode_png(good);
    // Cut inside a chunk: refused before stb sees it (the chunk is longer than the file).
    const fs::path bad = dir.write("b.png", std::string(bytes.begin(), bytes.begin() + 60));
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path); },
                       {"'" + bad.string() + "'", "corrupt PNG: the chunk at byte 33"});
    // Cut after the header chunk (8 + 25 bytes): whole chunks, so stb itself refuses it.
    dir.write("b.png", std::string(bytes.begin(), bytes.begin() + 33));
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path); },
                       {"'" + bad.string() + "'", "cannot be decoded"});
  }
  SUBCASE("no images, or no folder") {
    TempDir empty;
    empty.write("readme.txt", "nothing here");
    check_format_error([&] { (void)ddpm::data::read_image_folder(empty.path); },
                       {"has no PNG/JPEG images"});
    check_format_error([&] { (void)ddpm::data::read_image_folder(dir.path / "missing"); },
                       {"is not a directory"});
  }
  SUBCASE("arguments") {
    DDPM_CHECK_INVALID("channels", ddpm::data::read_image_folder(dir.path, 0, 0, 2));
    DDPM_CHECK_INVALID("height", ddpm::data::read_image_folder(dir.path, -1, 8));
    DDPM_CHECK_INVALID("width", ddpm::data::read_image_folder(dir.path, 8, -8));
    DDPM_CHECK_INVALID("width", ddpm::data::read_image_folder(dir.path, 8, 20000));
    DDPM_CHECK_INVALID("height and width", ddpm::data::read_image_folder(dir.path, 8, 0));
  }
}

TEST_CASE_TEMPLATE("write_samples_npy and read_npy_images round trip uint8 images", Real, float,
                   double) {
  TempDir dir;
  for (const Index channels : {1, 3}) {
    CAPTURE(channels);
    Batch<Real> images(3, channels * 4 * 5);
    for (Index k = 0; k < images.size(); ++k) {
      images.data()[k] = static_cast<Real>(
          ddpm::data::detail::byte_to_unit(static_cast<std::uint8_t>((k * 37) % 256)));
    }
    const fs::path file = dir.path / "samples.npy";
    ddpm::data::write_samples_npy(file, images, channels, 4, 5);

    const ddpm::io::NpyArray array = ddpm::io::read_npy(file);
    CHECK(array.dtype == ddpm::io::NpyDtype::u8);
    CHECK(array.shape == (channels == 1 ? std::vector<std::uint64_t>{3, 4, 5}
                                        : std::vector<std::uint64_t>{3, 3, 4, 5}));
    const ImageSet set = ddpm::data::read_npy_images(file);
    CHECK(set.channels == channels);
    CHECK(set.height == 4);
    CHECK(set.width == 5);
    CHECK(set.labels.empty());
    CHECK(set.images == images.template cast<float>());
  }
  const Batch<Real> one = Batch<Real>::Zero(2, 12);
  DDPM_CHECK_INVALID("channels", ddpm::data::write_samples_npy(dir.path / "x.npy", one, 2, 2, 3));
  DDPM_CHECK_INVALID("height", ddpm::data::write_samples_npy(dir.path / "x.npy", one, 1, 0, 3));
  DDPM_CHECK_INVALID("images", ddpm::data::write_samples_npy(dir.path / "x.npy", one, 3, 2, 3));
}

TEST_CASE("read_npy_images takes float arrays in [-1, 1] and refuses others") {
  TempDir dir;
  const fs::path file = dir.path / "x.npy";
  const std::vector<float> values = {-1.0f, -0.25f, 0.5f, 1.00005f, 0.0f, 0.75f, -0.5f, 1.0f};
  ddpm::io::write_npy(file, {2, 1, 2, 2}, std::span<const float>(values));
  const ImageSet set = ddpm::data::read_npy_images(file);
  CHECK(set.channels == 1);
  CHECK(std::vector<float>(set.images.data(), set.images.data() + 8) == values);

  const std::vector<double> doubles = {0.5, -0.5, 0.25, -0.25};
  ddpm::io::write_npy(file, {1, 2, 2}, std::span<const double>(doubles));
  CHECK(ddpm::data::read_npy_images(file).images(0, 2) == 0.25f);

  ddpm::io::write_npy(file, {1, 2, 2}, std::span<const double>(std::vector<double>{0, 0, 1.5, 0}));
  check_format_error([&] { (void)ddpm::data::read_npy_images(file); },
                     {"'" + file.string() + "'", "element 2 is 1.5", "scaled to [-1, 1]"});
  ddpm::io::write_npy(file, {1, 1, 1}, std::span<const float>(std::vector<float>{std::nanf("")}));
  check_format_error([&] { (void)ddpm::data::read_npy_images(file); }, {"element 0 is"});
  ddpm::io::write_npy(file, {2, 4, 4, 3},
                      std::span<const std::uint8_t>(std::vector<std::uint8_t>(96)));
  check_format_error([&] { (void)ddpm::data::read_npy_images(file); },
                     {"has 4 channels", "channels-last", "numpy.transpose(a, (0, 3, 1, 2))"});
  ddpm::io::write_npy(file, {4, 4}, std::span<const std::uint8_t>(std::vector<std::uint8_t>(16)));
  check_format_error([&] { (void)ddpm::data::read_npy_images(file); },
                     {"shape (4, 4) is not N x H x W or N x C x H x W"});
  ddpm::io::write_npy(file, {0, 4, 4}, std::span<const std::uint8_t>());
  check_format_error([&] { (void)ddpm::data::read_npy_images(file); }, {"a zero dimension"});
}

TEST_CASE("load_images picks the reader from what the path is") {
  TempDir dir;
  fs::create_directories(dir.path / "mnist");
  fs::create_directories(dir.path / "pngs");
  ddpm::data::write_idx(dir.path / "mnist/train-images-idx3-ubyte",
                        IdxArray{{2, 2, 2}, std::vector<std::uint8_t>(8, 0)});
  ddpm::data::write_idx(dir.path / "mnist/train-labels-idx1-ubyte", IdxArray{{2}, {4, 1}});
  save_png(dir, "pngs/a.png", pattern(3, 5, 3, 1));

  const ImageSet mnist = ddpm::data::load_images(dir.path / "mnist");
  CHECK(mnist.images.rows() == 2);
  CHECK(mnist.num_classes == 5);
  const ImageSet single = ddpm::data::load_images(dir.path / "mnist/train-images-idx3-ubyte");
  CHECK(single.labels == std::vector<int>{4, 1});  // the sibling labels file
  const ImageSet pngs = ddpm::data::load_images(dir.path / "pngs");
  CHECK(pngs.height == 5);
  CHECK(pngs.width == 3);
  CHECK(pngs.channels == 3);
  ddpm::data::write_samples_npy(dir.path / "s.npy", pngs.images, 3, 5, 3);
  CHECK(ddpm::data::load_images(dir.path / "s.npy").images == pngs.images);

  check_format_error([&] { (void)ddpm::data::load_images(dir.path / "nothing"); },
                     {"does not exist"});
  check_format_error([&] { (void)ddpm::data::load_images(dir.write("data.csv", "1,2\n")); },
                     {"is not a supported data set"});
  fs::rename(dir.path / "mnist/train-images-idx3-ubyte", dir.path / "mnist/t10k-images-idx3-ubyte");
  check_format_error([&] { (void)ddpm::data::load_images(dir.path / "mnist"); },
                     {"holds IDX files but no train-images-idx3-ubyte[.gz]"});
}

TEST_CASE("sample_image_batch draws reproducible rows, mirrored with flip") {
  const ImageSet set = small_set(5, 2, 3, 4);
  const ddpm::CounterRng rng(7);
  constexpr Index kBatch = 400;
  Batch<float> out(kBatch, set.images.cols());
  std::vector<int> labels;

  ddpm::data::sample_image_batch(set, rng, 3, false, out, labels);
  REQUIRE(labels.size() == static_cast<std::size_t>(kBatch));
  std::vector<int> seen(5, 0);
  for (Index i = 0; i < kBatch; ++i) {
    const auto picked = static_cast<Index>(out(i, 0) / 1000.0f);
    REQUIRE(picked < 5);
    ++seen[static_cast<std::size_t>(picked)];
    CHECK(out.row(i) == set.images.row(picked));
    CHECK(labels[static_cast<std::size_t>(i)] == set.labels[static_cast<std::size_t>(picked)]);
  }
  for (const int count : seen) CHECK(count > 0);  // P(some image never drawn) = 5 * 0.8^400

  SUBCASE("the same step gives the same batch, without reallocating; another step differs") {
    const Batch<float> first = out;
    const std::vector<int> first_labels = labels;
    const float* data = out.data();
    const int* label_data = labels.data();
    ddpm::data::sample_image_batch(set, rng, 3, false, out, labels);
    CHECK(out == first);
    CHECK(labels == first_labels);
    CHECK(out.data() == data);
    CHECK(labels.data() == label_data);
    ddpm::data::sample_image_batch(set, rng, 4, false, out, labels);
    CHECK(out != first);
  }
  SUBCASE("flip mirrors about half of the rows left-right, channel by channel") {
    ddpm::data::sample_image_batch(set, rng, 3, true, out, labels);
    Index flipped = 0;
    for (Index i = 0; i < kBatch; ++i) {
      Index picked = -1;
      for (Index j = 0; j < 5; ++j) {
        if (out.row(i) == set.images.row(j)) picked = j;
        if (out.row(i) == mirrored(set, j)) {
          picked = j;
          ++flipped;
        }
      }
      REQUIRE(picked >= 0);
      CHECK(labels[static_cast<std::size_t>(i)] == set.labels[static_cast<std::size_t>(picked)]);
    }
    // Binomial(400, 1/2): mean 200, sd 10; 4 sd either side.
    CHECK(flipped >= 160);
    CHECK(flipped <= 240);
  }
  SUBCASE("an unlabeled set clears the labels") {
    ImageSet unlabeled = set;
    unlabeled.labels.clear();
    unlabeled.num_classes = 0;
    ddpm::data::sample_image_batch(unlabeled, rng, 0, true, out, labels);
    CHECK(labels.empty());
  }
  SUBCASE("bad arguments") {
    Batch<float> none(0, set.images.cols());
    DDPM_CHECK_INVALID("out.rows()",
                       ddpm::data::sample_image_batch(set, rng, 0, false, none, labels));
    Batch<float> narrow(4, 3);
    DDPM_CHECK_INVALID("out", ddpm::data::sample_image_batch(set, rng, 0, false, narrow, labels));
    ImageSet empty = set;
    empty.images.resize(0, set.images.cols());
    empty.labels.clear();
    DDPM_CHECK_INVALID("set.images.rows()",
                       ddpm::data::sample_image_batch(empty, rng, 0, false, out, labels));
    ImageSet short_labels = set;
    short_labels.labels.pop_back();
    DDPM_CHECK_INVALID("set.labels.size()",
                       ddpm::data::sample_image_batch(short_labels, rng, 0, false, out, labels));
    ImageSet wrong_shape = set;
    wrong_shape.width = 5;
    DDPM_CHECK_INVALID("set.images",
                       ddpm::data::sample_image_batch(wrong_shape, rng, 0, false, out, labels));
  }
}

TEST_CASE("load_held_out_images takes the test split of an MNIST-format folder, else the data") {
  TempDir dir;
  fs::create_directories(dir.path / "mnist");
  ddpm::data::write_idx(dir.path / "mnist/train-images-idx3-ubyte",
                        IdxArray{{2, 2, 2}, std::vector<std::uint8_t>(8, 255)});
  ddpm::data::write_idx(dir.path / "mnist/t10k-images-idx3-ubyte",
                        IdxArray{{3, 2, 2}, std::vector<std::uint8_t>(12, 0)});
  bool held_out = false;
  const ImageSet test = ddpm::data::load_held_out_images(dir.path / "mnist", held_out);
  CHECK(held_out);
  CHECK(test.images.rows() == 3);
  CHECK((test.images.array() == -1.0f).all());
  CHECK(ddpm::data::load_training_images(dir.path / "mnist").images.rows() == 2);

  fs::remove(dir.path / "mnist/t10k-images-idx3-ubyte");
  const ImageSet train = ddpm::data::load_held_out_images(dir.path / "mnist", held_out);
  CHECK_FALSE(held_out);
  CHECK(train.images.rows() == 2);
  check_format_error(
      [&] { (void)ddpm::data::load_held_out_images(dir.path / "missing", held_out); },
      {"does not exist"});
}

TEST_CASE("write_image_pngs writes one PNG per row, numbered, that read back exactly") {
  TempDir dir;
  Batch<float> images(3, 2 * 3);
  for (Index i = 0; i < images.size(); ++i) {
    images.data()[i] = ddpm::data::detail::byte_to_unit(static_cast<std::uint8_t>(17 * i));
  }
  ddpm::io::write_image_pngs(dir.path / "pngs", images, 1, 2, 3);
  CHECK(fs::exists(dir.path / "pngs/000000.png"));
  CHECK(fs::exists(dir.path / "pngs/000002.png"));
  CHECK_FALSE(fs::exists(dir.path / "pngs/000003.png"));
  const ImageSet back = ddpm::data::read_image_folder(dir.path / "pngs");
  REQUIRE(back.images.rows() == 3);
  CHECK(back.height == 2);
  CHECK(back.width == 3);
  CHECK(back.images == images);
}

TEST_CASE("ImageBatches and LabeledImageBatches are sample_image_batch at the trainer's step") {
  const ImageSet set = small_set(5, 2, 3, 4);
  const ddpm::CounterRng rng(7);
  Batch<float> expected(6, set.images.cols());
  std::vector<int> expected_labels;
  ddpm::data::sample_image_batch(set, rng, 9, true, expected, expected_labels);
  static_assert(ddpm::LabeledDataSource<ddpm::data::LabeledImageBatches, float>);
  static_assert(ddpm::DataSource<ddpm::data::ImageBatches, float>);
  static_assert(!ddpm::LabeledDataSource<ddpm::data::ImageBatches, float>);
  Batch<float> out;  // sized by the source
  std::vector<int> labels;
  ddpm::data::LabeledImageBatches{&set, rng, true}(9, 6, out, labels);
  CHECK(out == expected);
  CHECK(labels == expected_labels);
  Batch<float> unlabeled;
  ddpm::data::ImageBatches{&set, rng, true}(9, 6, unlabeled);
  CHECK(unlabeled == expected);
  ddpm::data::ImageBatches{&set, rng, false}(9, 6, unlabeled);
  CHECK(unlabeled != expected);  // no flips: some of the 6 rows were mirrored above
}

}  // namespace images_test
