// SPDX-License-Identifier: MIT
// Umbrella header of the ddpm core: schedules, Gaussian algebra, diffusion, samplers, concepts.
#pragma once

/// \mainpage ddpm API reference
/// Denoising diffusion probabilistic models in header-only C++20 on Eigen. Where to start:
///   - the concepts a network or data source models, each with its requirements and a minimal
///     model: denoiser.hpp (ddpm::Denoiser, ddpm::TrainableDenoiser, ddpm::DataSource, ...);
///   - the diffusion itself, its losses and bound: ddpm::NoiseSchedule, ddpm::GaussianDiffusion;
///   - sampling: ddpm::AncestralSampler, ddpm::DdimSampler, ddpm::SolverSampler, or ddpm::sample
///     with a ddpm::SamplerSpec; guidance: ddpm::ClassifierFreeGuidance, ddpm::ClassifierGuidance;
///   - training: ddpm::train::Trainer and ddpm::train::Checkpoint;
///   - the bundled networks in ddpm::nn, data sets in ddpm::data, metrics in ddpm::eval, files in
///     ddpm::io.
///
/// The README and docs/*.md describe the example programs and the results they reproduce.
/// Implementation details (the detail namespaces and folders) are left out of this reference.

/// \namespace ddpm
/// Denoising diffusion probabilistic models: noise schedules, the Gaussian diffusion (losses,
/// posterior, variational bound), samplers and ODE solvers, guidance, and the concepts a user's
/// network models (denoiser.hpp). Everything here depends only on Eigen.
///
/// \namespace ddpm::nn
/// Neural networks with hand-written backward passes (checked against finite differences): the
/// layers, the MLP, the UNet, the point-cloud networks and the classifier, all Denoisers.
///
/// \namespace ddpm::optim
/// Optimizers and their helpers: Adam(W), gradient clipping, EMA weights, learning-rate schedules.
///
/// \namespace ddpm::train
/// Training: the Trainer, checkpoints, run configurations of the example programs and the
/// noisy-data classifier used for guidance.
///
/// \namespace ddpm::data
/// Data sets: the 2-D toy distributions, a user's 2-D points, images (IDX/MNIST, PNG/JPEG folders,
/// .npy) and 3-D shapes as point clouds.
///
/// \namespace ddpm::eval
/// Evaluation: Frechet distances, Chamfer and earth mover's distances, point-cloud metrics, the
/// strided variational bound and the probability-flow ODE likelihood.
///
/// \namespace ddpm::io
/// Files: NPY, CSV, JSON, PNG, point clouds, crash-safe writes, plots and progress lines.
///
/// \namespace ddpm::viz
/// Pictures of the diffusion: forward and reverse strips, trajectories, point-cloud renderings.
///
/// \namespace ddpm::dist
/// Many processes (ddpm/dist/mpi.hpp, optional, needs MPI): the Communicator of data-parallel
/// training and sampling over MPI.

#include "ddpm/core/communicator.hpp"
#include "ddpm/core/error.hpp"
#include "ddpm/core/exact_sum.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/thread_tuner.hpp"
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
