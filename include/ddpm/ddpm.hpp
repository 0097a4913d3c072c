// SPDX-License-Identifier: MIT
// Umbrella header of the ddpm core: schedules, Gaussian algebra, diffusion, samplers, concepts.
#pragma once

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/denoiser.hpp"
#include "ddpm/diffusion.hpp"
#include "ddpm/gaussian.hpp"
#include "ddpm/gaussian_mixture.hpp"
#include "ddpm/guidance.hpp"
#include "ddpm/mixture_denoiser.hpp"
#include "ddpm/samplers/ancestral.hpp"
#include "ddpm/samplers/ddim.hpp"
#include "ddpm/samplers/grid.hpp"
#include "ddpm/samplers/repaint.hpp"
#include "ddpm/samplers/sample.hpp"
#include "ddpm/samplers/solvers.hpp"
#include "ddpm/schedule.hpp"
#include "ddpm/timestep_sampler.hpp"
