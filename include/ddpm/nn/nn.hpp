// SPDX-License-Identifier: MIT
// Umbrella header for ddpm's bundled network layers and models.
#pragma once

#include "ddpm/core/parallel.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/check.hpp"
#include "ddpm/nn/embedding.hpp"
#include "ddpm/nn/gradient_check.hpp"
#include "ddpm/nn/init.hpp"
#include "ddpm/nn/linear.hpp"
#include "ddpm/nn/mlp.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/workspace.hpp"
