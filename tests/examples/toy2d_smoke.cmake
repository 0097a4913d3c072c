# Runs ddpm-toy2d end to end on small sizes: train, resume, sample, eval, and bad input.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)

file(REMOVE_RECURSE ${OUT})
# A constant learning rate, so that a 40-step run is the first part of a 60-step one.
set(small --width 32 --depth 2 --embedding 16 --T 100 --batch 64 --n 200 --sample-steps 20 --seed 4
    --decay constant --warmup 0)
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
