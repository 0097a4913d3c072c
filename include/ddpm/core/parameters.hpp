// SPDX-License-Identifier: MIT
// The view of a trainable model's parameters that optimizers, EMA and checkpoints work on.
#pragma once

#include <span>
#include <string>

namespace ddpm {

/// One contiguous block of parameters and the matching gradient buffer (same size), e.g. a weight
/// matrix. A trainable denoiser exposes its parameters as a list of these; the buffers it points to
/// stay valid and at the same address for the lifetime of the model.
template <class Real>
struct ParameterBlock {
  std::string name;       ///< e.g. "mlp.layer0.weight"; used by checkpoints to match tensors
  std::span<Real> value;  ///< the parameters
  std::span<Real> grad;   ///< d loss / d value, accumulated by backward()
};

}  // namespace ddpm
