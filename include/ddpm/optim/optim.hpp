// SPDX-License-Identifier: MIT
// Umbrella header for ddpm's optimizers, gradient clipping, learning-rate schedules and EMA.
#pragma once

#include "ddpm/optim/adam.hpp"
#include "ddpm/optim/clip.hpp"
#include "ddpm/optim/ema.hpp"
#include "ddpm/optim/lr_schedule.hpp"
#include "ddpm/optim/parameter_view.hpp"
