# ddpm-toy2d and ddpm-images export, sample --weights and sample --x-init without Python (the
# PyTorch comparison is cross_framework.py): the export samples bitwise as its checkpoint (EMA and
# raw weights), --x-init alone fixes DDIM's samples (not --seed) for every sampler, and misuse is
# refused with a message naming the option.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
function(expect_same a b)
  file(SHA256 ${a} ha)
  file(SHA256 ${b} hb)
  if(NOT ha STREQUAL hb)
    message(FATAL_ERROR "${a} and ${b} differ")
  endif()
endfunction()

# ---- ddpm-toy2d ------------------------------------------------------------------------------
set(PROGRAM ${TOY2D})
set(ddim --sampler ddim --sample-steps 10 --threads 1)
run_ok(train --dataset moons --steps 20 --width 32 --depth 2 --embedding 16 --T 100 --batch 64
       --n 20 --sample-steps 5 --threads 1 --out ${OUT}/toy)
set(ckpt ${OUT}/toy/model.ckpt)
set(x_T ${OUT}/toy/samples.npy)  # 20 x 2 float32: any such array is an x_T
expect_output(ARGS export --checkpoint ${ckpt} --out ${OUT}/toy.safetensors
              OUTPUT_MATCHES "wrote .*toy.safetensors: 1730 parameters \\(EMA weights of step 20")
run_ok(export --checkpoint ${ckpt} --out ${OUT}/toy_raw.safetensors --raw-weights)
run_ok(sample --checkpoint ${ckpt} --x-init ${x_T} ${ddim} --seed 1 --out ${OUT}/toy_ckpt)
run_ok(sample --checkpoint ${ckpt} --x-init ${x_T} ${ddim} --seed 2 --out ${OUT}/toy_seed2)
expect_same(${OUT}/toy_ckpt/samples.npy ${OUT}/toy_seed2/samples.npy)
run_ok(sample --weights ${OUT}/toy.safetensors --x-init ${x_T} ${ddim} --out ${OUT}/toy_weights)
expect_same(${OUT}/toy_ckpt/samples.npy ${OUT}/toy_weights/samples.npy)
run_ok(sample --checkpoint ${ckpt} --raw-weights --x-init ${x_T} ${ddim} --out ${OUT}/toy_ckpt_raw)
run_ok(sample --weights ${OUT}/toy_raw.safetensors --x-init ${x_T} ${ddim} --out ${OUT}/toy_raw)
expect_same(${OUT}/toy_ckpt_raw/samples.npy ${OUT}/toy_raw/samples.npy)
# Without --x-init DDIM's x_T comes from --seed.
run_ok(sample --checkpoint ${ckpt} ${ddim} --n 20 --seed 1 --out ${OUT}/toy_prior)
file(SHA256 ${OUT}/toy_prior/samples.npy prior)
file(SHA256 ${OUT}/toy_ckpt/samples.npy given)
if(prior STREQUAL given)
  message(FATAL_ERROR "--x-init gave the samples of the prior's x_T")
endif()
foreach(sampler ddpm ddim euler euler-a heun dpm++2m dpm++3m dpm++2m-sde unipc)
  run_ok(sample --weights ${OUT}/toy.safetensors --x-init ${x_T} --sampler ${sampler}
         --sample-steps 4 --threads 1 --out ${OUT}/toy_${sampler})
endforeach()
expect_output(ARGS export --help OUTPUT_MATCHES "diffusion.betas" "data.mean" "ddpm.weights")
expect_refusal("invalid --n = 5; allowed: 20, the samples of --x-init"
               sample --checkpoint ${ckpt} --x-init ${x_T} --n 5 --out ${OUT}/bad)
expect_refusal("invalid --T, --width = given; allowed: only with --weights of a file without a run.*sets the model"
               sample --weights ${OUT}/toy.safetensors --width 64 --T 50 --out ${OUT}/bad)
expect_refusal("invalid --depth = given; allowed: .*the checkpoint sets"
               sample --checkpoint ${ckpt} --depth 4 --out ${OUT}/bad)
expect_refusal("excludes" sample --weights ${OUT}/toy.safetensors --checkpoint ${ckpt} --out ${OUT}/bad)
expect_refusal("excludes" sample --weights ${OUT}/toy.safetensors --raw-weights --out ${OUT}/bad)
expect_refusal("invalid --checkpoint = none; allowed: a model.ckpt written by train, or --weights"
               sample --out ${OUT}/bad)
expect_refusal("safetensors" sample --weights ${ckpt} --out ${OUT}/bad)

# ---- ddpm-images -----------------------------------------------------------------------------
set(PROGRAM ${IMAGES})
set(tiny --base 8 --mult 1,2 --T 50 --batch 4 --threads 1)
run_ok(train --data ${CMAKE_CURRENT_LIST_DIR}/fixtures/tiny_images ${tiny} --steps 2 --preview 0
       --out ${OUT}/unet)
set(ckpt ${OUT}/unet/model.ckpt)
run_ok(sample --checkpoint ${ckpt} --n 3 --sample-steps 5 --npy-float --out ${OUT}/unet_prior)
file(STRINGS ${OUT}/unet_prior/samples.npy header REGEX "descr")
if(NOT header MATCHES "'descr': '<f4'.*'shape': \\(3, 1, 8, 8\\)")
  message(FATAL_ERROR "--npy-float: samples.npy is not a (3, 1, 8, 8) float32 array: ${header}")
endif()
set(x_T ${OUT}/unet_prior/samples.npy)
run_ok(export --checkpoint ${ckpt} --out ${OUT}/unet.safetensors)
run_ok(sample --checkpoint ${ckpt} --x-init ${x_T} ${ddim} --npy-float --out ${OUT}/unet_ckpt)
run_ok(sample --weights ${OUT}/unet.safetensors --x-init ${x_T} ${ddim} --npy-float
       --out ${OUT}/unet_weights)
expect_same(${OUT}/unet_ckpt/samples.npy ${OUT}/unet_weights/samples.npy)
expect_refusal("invalid --x-init = .*shape \\(20, 2\\).*allowed: N x C x H x W \\(N x 1 x 8 x 8 for this model\\) or N x 64"
               sample --checkpoint ${ckpt} --x-init ${OUT}/toy/samples.npy --out ${OUT}/bad)
expect_refusal("model.kind' = 'mlp': this program builds a 'unet' model"
               sample --weights ${OUT}/toy.safetensors --out ${OUT}/bad)
