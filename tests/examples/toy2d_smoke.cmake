# Runs ddpm-toy2d end to end on small sizes: train, resume, sample, eval, and bad input.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)

file(REMOVE_RECURSE ${OUT})
# A constant learning rate, so that a 40-step run is the first part of a 60-step one.
set(rest --embedding 16 --T 100 --batch 64 --n 200 --sample-steps 20 --seed 4 --decay constant
    --warmup 0)
set(small --width 32 --depth 2 ${rest})
run_ok(train --dataset moons --steps 40 ${small} --checkpoint-every 20 --out ${OUT}/train)
expect_files(${OUT}/train model.ckpt loss.csv loss.png forward.png reverse.png samples.csv samples.png compare.png)
file(STRINGS ${OUT}/train/loss.csv loss_lines)
list(LENGTH loss_lines count)
if(NOT count EQUAL 41)
  message(FATAL_ERROR "loss.csv has ${count} lines, expected a header and 40 steps")
endif()

# Resuming the 40-step checkpoint to 60 steps continues from step 41.
run_ok(train --dataset moons --steps 60 ${small} --resume ${OUT}/train/model.ckpt --out ${OUT}/resumed)
file(STRINGS ${OUT}/resumed/loss.csv resumed_lines)
list(GET resumed_lines 1 first)
if(NOT first MATCHES "^41,")
  message(FATAL_ERROR "the resumed run starts at '${first}', expected step 41")
endif()
# ... and, in a new process, exactly as a run that never stopped (loss, gradient norm and learning
# rate printed to 9 digits).
run_ok(train --dataset moons --steps 60 ${small} --out ${OUT}/straight)
file(STRINGS ${OUT}/straight/loss.csv straight_lines)
list(SUBLIST straight_lines 41 20 straight_tail)
list(SUBLIST resumed_lines 1 20 resumed_tail)
if(NOT straight_tail STREQUAL resumed_tail)
  message(FATAL_ERROR "resumed steps 41-60 differ from the uninterrupted run:\n${resumed_tail}\nvs\n${straight_tail}")
endif()

# A resume that differs from the checkpoint's run is refused, naming each differing field.
expect_refusal("data.name: checkpoint moons, this run circles"
               train --dataset circles --steps 60 ${small} --resume ${OUT}/train/model.ckpt --out ${OUT}/bad)
expect_refusal("diffusion.schedule: checkpoint linear, this run cosine"
               train --dataset moons --schedule cosine --steps 60 ${small}
               --resume ${OUT}/train/model.ckpt --out ${OUT}/bad)
expect_refusal("model.width: checkpoint 32, this run 64"
               train --dataset moons --steps 60 --width 64 --depth 2 ${rest} --resume ${OUT}/train/model.ckpt
               --out ${OUT}/bad)
expect_refusal("differs in 3 fields.*diffusion.loss: checkpoint simple, this run kl.*model.depth: checkpoint 2, this run 3.*data.name: checkpoint moons, this run swissroll.*--init-from"
               train --steps 60 --width 32 --depth 3 ${rest} --loss kl --resume ${OUT}/train/model.ckpt
               --out ${OUT}/bad)
# A deliberate change starts from the weights only: --init-from (fine-tuning on circles).
run_ok(train --dataset circles --steps 10 ${small} --init-from ${OUT}/train/model.ckpt
       --out ${OUT}/finetuned)
file(STRINGS ${OUT}/finetuned/loss.csv tuned_lines)
list(LENGTH tuned_lines count)
if(NOT count EQUAL 11)
  message(FATAL_ERROR "the --init-from run logged ${count} lines, expected a header and 10 steps")
endif()
expect_refusal("--init-from .*the network differs.*model.width: checkpoint 32, this run 48"
               train --dataset circles --steps 10 --width 48 --depth 2 ${rest}
               --init-from ${OUT}/train/model.ckpt --out ${OUT}/bad)
expect_refusal("excludes" train --steps 10 ${small} --init-from ${OUT}/train/model.ckpt
               --resume ${OUT}/train/model.ckpt --out ${OUT}/bad)

# info prints every recorded field, the step and the parameter count.
expect_output(ARGS info ${OUT}/train/model.ckpt OUTPUT_MATCHES
              "step: 40\n" "parameters: [0-9]+\n" "diffusion.schedule +linear"
              "diffusion.T +100\n" "diffusion.variance +fixed-small" "diffusion.clip_x0 +false"
              "diffusion.rescale_hybrid +true" "diffusion.betas +100 values" "model.width +32\n"
              "model.embedding +16\n" "data.name +moons" "train.lr +0.001\n"
              "train.decay +constant")
# A checkpoint of the old format ("ddpm trainer" with toy2d.* metadata) is refused with a message.
expect_refusal("has no run description \\(its format is 'ddpm trainer'\\)"
               sample --checkpoint ${CMAKE_CURRENT_LIST_DIR}/fixtures/old_format_toy2d.ckpt
               --out ${OUT}/bad)
# --threads is bounded with a message, never a crash.
expect_thread_bounds(train --dataset moons --steps 2 ${small} --out ${OUT}/bad)
expect_thread_bounds(sample --checkpoint ${OUT}/train/model.ckpt --out ${OUT}/bad)

run_ok(sample --checkpoint ${OUT}/train/model.ckpt --sampler ddim --n 100 --out ${OUT}/sample)
expect_files(${OUT}/sample samples.csv samples.png compare.png reverse.png)
file(STRINGS ${OUT}/sample/samples.csv sample_lines)
list(GET sample_lines 0 header)
list(LENGTH sample_lines count)
if(NOT header STREQUAL "x,y" OR NOT count EQUAL 101)
  message(FATAL_ERROR "samples.csv: header '${header}', ${count} lines")
endif()

run_ok(eval --checkpoint ${OUT}/train/model.ckpt --sampler ddim --sample-steps 10 --n 100 --bound-n 50 --out ${OUT}/eval)
expect_files(${OUT}/eval metrics.json data.csv samples.csv)
file(READ ${OUT}/eval/metrics.json json)
foreach(key mmd2 energy_distance sliced_w1 floor nll_bound)
  string(JSON value ERROR_VARIABLE json_error GET "${json}" ${key})
  if(json_error)
    message(FATAL_ERROR "metrics.json lacks ${key}: ${json_error}\n${json}")
  endif()
endforeach()
string(JSON unit GET "${json}" nll_bound unit)
if(NOT unit STREQUAL "nats/dim")
  message(FATAL_ERROR "nll_bound unit is ${unit}")
endif()

# --sample-variance: the model (trained with toy2d's fixed-small) sampled with beta_t gives other
# samples; naming its own variance changes nothing; a model that learned its variance refuses it.
run_ok(sample --checkpoint ${OUT}/train/model.ckpt --n 100 --sample-steps 20 --out ${OUT}/small)
run_ok(sample --checkpoint ${OUT}/train/model.ckpt --n 100 --sample-steps 20
       --sample-variance fixed-large --out ${OUT}/large)
run_ok(sample --checkpoint ${OUT}/train/model.ckpt --n 100 --sample-steps 20
       --sample-variance fixed-small --out ${OUT}/small_again)
file(READ ${OUT}/small/samples.csv small_csv)
file(READ ${OUT}/large/samples.csv large_csv)
file(READ ${OUT}/small_again/samples.csv small_again_csv)
if(small_csv STREQUAL large_csv OR NOT small_csv STREQUAL small_again_csv)
  message(FATAL_ERROR "--sample-variance: fixed-large must change the samples, fixed-small not")
endif()
# Without --threads, training and sampling let a ThreadTuner change the thread count between
# steps (2, then 1, then the faster); the results are bitwise those of one thread.
run_ok(sample --checkpoint ${OUT}/train/model.ckpt --n 100 --sample-steps 20 --threads 1
       --out ${OUT}/small_one_thread)
file(READ ${OUT}/small_one_thread/samples.csv small_one_thread_csv)
run_ok(train --dataset moons --steps 60 ${small} --threads 1 --out ${OUT}/straight_one_thread)
file(READ ${OUT}/straight/loss.csv straight_csv)
file(READ ${OUT}/straight_one_thread/loss.csv straight_one_thread_csv)
if(NOT small_csv STREQUAL small_one_thread_csv OR NOT straight_csv STREQUAL straight_one_thread_csv)
  message(FATAL_ERROR "the thread count chosen by the ThreadTuner changed the results")
endif()
run_ok(train --dataset moons --steps 5 ${small} --variance learned-range --loss hybrid
       --out ${OUT}/learned)
expect_refusal("--sample-variance = fixed-small; allowed: only for a model trained with a fixed"
               sample --checkpoint ${OUT}/learned/model.ckpt --n 10 --sample-variance fixed-small
               --out ${OUT}/bad)
expect_refusal("--sample-variance: learned-range not in"
               sample --checkpoint ${OUT}/train/model.ckpt --sample-variance learned-range
               --out ${OUT}/bad)

# The training options of issue 13: v on a zero-terminal-SNR schedule with soft-min-SNR weighting
# and offset noise trains, samples from SNR = 0 (the evenly spaced steps visit T-1; dpm++2m starts
# its grid there) and records the options; eps there is refused.
run_ok(train --dataset moons --steps 10 ${small} --output v --zero-terminal-snr
       --snr-weighting soft-min-snr --snr-gamma 4 --offset-noise 0.1 --out ${OUT}/options)
run_ok(sample --checkpoint ${OUT}/options/model.ckpt --sampler dpm++2m --n 50
       --out ${OUT}/options_sample)
expect_output(ARGS info ${OUT}/options/model.ckpt OUTPUT_MATCHES
              "diffusion.zero_terminal_snr +true" "diffusion.snr_weighting +soft-min-snr"
              "diffusion.snr_gamma +4\n" "train.offset_noise +0.1\n" "100 values, first [0-9.e-]+, last 1\n")
expect_refusal("invalid output = eps; allowed: v \\(or x0\\) on a zero-terminal-SNR schedule"
               train --dataset moons --steps 10 ${small} --zero-terminal-snr --out ${OUT}/bad)

# A corrupt checkpoint is refused with a message, not a crash.
file(WRITE ${OUT}/broken.ckpt "DDPMCKPT not really")
execute_process(COMMAND ${PROGRAM} sample --checkpoint ${OUT}/broken.ckpt --out ${OUT}/broken
                RESULT_VARIABLE result ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT result EQUAL 1 OR NOT err MATCHES "corrupt")
  message(FATAL_ERROR "a corrupt checkpoint gave exit ${result} and '${err}'")
endif()
# An unknown data set is refused by the parser.
execute_process(COMMAND ${PROGRAM} train --dataset spiral --out ${OUT}/bad RESULT_VARIABLE result
                OUTPUT_QUIET ERROR_QUIET)
if(result EQUAL 0)
  message(FATAL_ERROR "--dataset spiral was accepted")
endif()
