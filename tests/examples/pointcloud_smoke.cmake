# Runs ddpm-pointcloud end to end on tiny sizes: train (both stages), exact resume of each, sample
# with .ply files, training on those files, reconstruct, eval, info, and bad input.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)

file(REMOVE_RECURSE ${OUT})
# A constant learning rate, so that a 10-step run is the first part of a 20-step one.
set(tiny --points 32 --train-points 16 --train-shapes 24 --batch 4 --decoder 16,16 --encoder 16,16 --head 16 --latent 4 --T 40
    --decay constant --warmup 0 --prior-width 16 --prior-depth 2 --prior-T 40 --prior-steps 20
    --seed 3 --threads 2)
run_ok(train ${tiny} --steps 20 --preview 4 --out ${OUT}/straight)
expect_files(${OUT}/straight model.ckpt prior.ckpt loss.csv loss.png samples.npy samples.png
             reverse.png prior/loss.csv)

# Resuming a 10-step checkpoint to 20 steps repeats steps 11-20 of the uninterrupted run exactly,
# and so does the prior resumed from its own checkpoint.
run_ok(train ${tiny} --steps 10 --preview 0 --out ${OUT}/first)
run_ok(train ${tiny} --steps 20 --preview 0 --resume ${OUT}/first/model.ckpt --out ${OUT}/resumed)
file(STRINGS ${OUT}/straight/loss.csv straight_lines)
file(STRINGS ${OUT}/resumed/loss.csv resumed_lines)
list(SUBLIST straight_lines 11 10 straight_tail)
list(SUBLIST resumed_lines 1 10 resumed_tail)
if(NOT straight_tail STREQUAL resumed_tail)
  message(FATAL_ERROR "resumed steps 11-20 differ from the uninterrupted run:\n${resumed_tail}\nvs\n${straight_tail}")
endif()
file(SHA256 ${OUT}/straight/model.ckpt straight_hash)
file(SHA256 ${OUT}/resumed/model.ckpt resumed_hash)
if(NOT straight_hash STREQUAL resumed_hash)
  message(FATAL_ERROR "the resumed autoencoder checkpoint differs from the uninterrupted one")
endif()
file(SHA256 ${OUT}/straight/prior.ckpt straight_prior)
file(SHA256 ${OUT}/resumed/prior.ckpt resumed_prior)
if(NOT straight_prior STREQUAL resumed_prior)
  message(FATAL_ERROR "the prior trained after a resume differs from the uninterrupted one")
endif()
expect_refusal("model.kl_weight: checkpoint 0.001, this run 0.5"
               train ${tiny} --kl-weight 0.5 --steps 20 --resume ${OUT}/first/model.ckpt --out ${OUT}/bad)

# sample: S x N x 3 float32 .npy, pictures and one .ply per shape.
run_ok(sample --checkpoint ${OUT}/straight/model.ckpt --n 5 --points 32 --sample-steps 10 --ply-dir
       ${OUT}/sample/ply --out ${OUT}/sample --threads 2)
expect_files(${OUT}/sample samples.npy samples.png reverse.png ply/shape_0000.ply ply/shape_0004.ply)
file(READ ${OUT}/sample/samples.npy header OFFSET 10 LIMIT 70)
if(NOT header MATCHES "'descr': '<f4'.*'shape': \\(5, 32, 3\\)")
  message(FATAL_ERROR "samples.npy header is not float32 (5, 32, 3): \"${header}\"")
endif()

# The .ply files train a model of their own (the user's clouds, one held out).
run_ok(train --data ${OUT}/sample/ply --held-out 1 --points 32 --train-points 32 --batch 2 --decoder 16 --encoder 16
       --latent 4 --T 40 --steps 3 --prior-steps 0 --preview 0 --out ${OUT}/files --threads 2)
expect_files(${OUT}/files model.ckpt)

# reconstruct and eval against held-out shapes, each beside its floor.
expect_output(ARGS reconstruct --checkpoint ${OUT}/straight/model.ckpt --n 3 --points 32 --sample-steps 10
                   --out ${OUT}/reconstruct --threads 2
              OUTPUT_MATCHES "reconstruction of 3 held-out shapes: CD [0-9.]+, EMD [0-9.]+"
                             "floor \\(the same surfaces sampled again\\): CD")
expect_files(${OUT}/reconstruct inputs.npy reconstructions.npy reconstruct.png reverse.png)
expect_output(ARGS eval --checkpoint ${OUT}/straight/model.ckpt --n 4 --points 32 --sample-steps 10
                   --emd-points 16 --out ${OUT}/eval --threads 2
              OUTPUT_MATCHES "\"1nna_cd\"" "\"floor\"" "\"cov_emd\"")
expect_files(${OUT}/eval metrics.json samples.npy reference.npy)
expect_output(ARGS info ${OUT}/straight/model.ckpt
              OUTPUT_MATCHES "architecture +pointcloud latent=4" "data.name +shapes:sphere,ellipsoid")

# Bad input: clear refusals, never a crash.
expect_refusal("--shapes: banana not in" train --shapes banana --out ${OUT}/bad)
file(MAKE_DIRECTORY ${OUT}/corrupt)
file(WRITE ${OUT}/corrupt/a.ply "ply\nformat ascii 1.0\nelement vertex 40\nproperty float x\nend_header\n1\n")
file(WRITE ${OUT}/corrupt/b.xyz "0 0 0\n1 1 1\n")
expect_refusal("point-cloud file '.*a.ply'" train --data ${OUT}/corrupt --points 32 --train-points 16
               --out ${OUT}/bad)
expect_refusal("--n = 100; allowed: at most half the held-out shapes"
               eval --checkpoint ${OUT}/files/model.ckpt --prior ${OUT}/straight/prior.ckpt --n 100
               --points 32 --out ${OUT}/bad)
expect_thread_bounds(sample --checkpoint ${OUT}/straight/model.ckpt)
