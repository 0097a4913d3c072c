// SPDX-License-Identifier: MIT
// The tiny networks the fuzz targets load weights into, shared with the corpus generator so that
// the seeds hold weights of exactly their shapes.
#pragma once

#include "ddpm/nn/mlp.hpp"

namespace ddpm::fuzz {

/// An Mlp of 2 -> 4 hidden units (1 layer) -> 2 with a 4-wide time embedding: 6 small tensors.
inline nn::MlpConfig tiny_mlp_config() {
  nn::MlpConfig c;
  c.input_dim = 2;
  c.output_dim = 2;
  c.width = 4;
  c.depth = 1;
  c.embedding_dim = 4;
  return c;
}

}  // namespace ddpm::fuzz
