// SPDX-License-Identifier: MIT
// Fuzz target: the image loader's decode path (PNG and JPEG through stb_image):
// detail::read_image_file, detail::decode_image to 1 and 3 channels, and data::read_image_folder
// on a folder holding the file, as it is and resized to 8 x 8 (the resampler reads the decoded
// size, so it must match what read_image_file reported).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "ddpm/data/images.hpp"
#include "fuzz_common.hpp"

namespace {

/// A folder of its own per process, holding the one image.
std::filesystem::path image_folder() {
  const std::filesystem::path dir =
      ddpm::fuzz::temp_dir() / ("ddpm_fuzz_" + std::to_string(::getpid()) + "_images");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) ddpm::fuzz::TempFile::fatal("cannot create " + dir.string());
  return dir;
}

struct Folder {
  std::filesystem::path dir = image_folder();
  ddpm::fuzz::TempFile file{"images/a", ".png"};
  ~Folder() {
    std::error_code ec;
    std::filesystem::remove(file.path(), ec);
    std::filesystem::remove(dir, ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Folder folder;
  const std::filesystem::path& path = folder.file.write(data, size);
  const std::string name = path.string();
  using ddpm::fuzz::only_format_errors;
  ddpm::data::detail::ImageInfo info;
  std::string bytes;
  if (!only_format_errors(
          "read_image_file", [&] { bytes = ddpm::data::detail::read_image_file(path, info); },
          name)) {
    return 0;
  }
  for (const int channels : {1, 3}) {
    std::vector<float> planar;
    const bool decoded = only_format_errors(
        "decode_image", [&] { ddpm::data::detail::decode_image(path, bytes, channels, planar); },
        name);
    const auto expected = static_cast<std::size_t>(info.width) *
                          static_cast<std::size_t>(info.height) *
                          static_cast<std::size_t>(channels);
    if (decoded && planar.size() != expected) {
      ddpm::fuzz::finding("decode_image", "decoded " + std::to_string(planar.size()) +
                                              " values, read_image_file reported " +
                                              std::to_string(info.height) + " x " +
                                              std::to_string(info.width));
    }
  }
  // The folder's messages name the folder or the file in it: both start with the folder's path.
  const std::string dir = folder.dir.string();
  only_format_errors(
      "read_image_folder", [&] { (void)ddpm::data::read_image_folder(folder.dir); }, dir);
  only_format_errors(
      "read_image_folder resized",
      [&] { (void)ddpm::data::read_image_folder(folder.dir, 8, 8, 3, /*resize=*/true); }, dir);
  return 0;
}
