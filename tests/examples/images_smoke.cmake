# Runs ddpm-images end to end on a folder of eight 8x8 PNGs in two class subfolders: a
# class-conditional tiny UNet trains, resumes, samples (plain, classifier-free guided, classifier
# guided) into samples.npy and one PNG per sample; the classifier trains; eval writes bits/dim and
# the classifier-feature Frechet distance, and curve draws them; bad input is refused with a
# message.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)
function(expect_failure pattern)
  execute_process(COMMAND ${PROGRAM} ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(result EQUAL 0 OR NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "ddpm-images ${ARGN} gave exit ${result}, expected a failure matching "
                        "'${pattern}':\n${out}\n${err}")
  endif()
endfunction()

file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})
set(data ${CMAKE_CURRENT_LIST_DIR}/fixtures/tiny_images)
set(tiny --base 8 --mult 1,2 --T 50 --batch 4 --threads 2)

run_ok(train --data ${data} ${tiny} --class-conditional --steps 4 --checkpoint-every 2
       --preview 4 --out ${OUT}/model)
expect_files(${OUT}/model model.ckpt loss.csv loss.png samples.png trajectory.png)
run_ok(train --data ${data} ${tiny} --class-conditional --steps 6 --preview 0
       --resume ${OUT}/model/model.ckpt --out ${OUT}/model)
file(STRINGS ${OUT}/model/loss.csv resumed_lines)
list(LENGTH resumed_lines resumed_count)
if(NOT resumed_count EQUAL 3)  # header + steps 5 and 6
  message(FATAL_ERROR "resumed run logged ${resumed_count} lines, expected 3:\n${resumed_lines}")
endif()

run_ok(sample --checkpoint ${OUT}/model/model.ckpt --n 5 --sample-steps 10 --png-dir
       ${OUT}/pngs --out ${OUT}/sample)
expect_files(${OUT}/sample samples.png trajectory.png samples.npy)
expect_files(${OUT}/pngs 000000.png 000004.png)
file(STRINGS ${OUT}/sample/samples.npy header REGEX "descr")
if(NOT header MATCHES "'descr': '\\|u1'.*'shape': \\(5, 8, 8\\)")
  message(FATAL_ERROR "samples.npy is not a (5, 8, 8) uint8 array: ${header}")
endif()
run_ok(sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 1 --guidance 2 --sampler ddpm
       --out ${OUT}/guided)

run_ok(train-classifier --data ${data} --base 8 --mult 1,2 --T 50 --batch 4 --steps 3
       --out ${OUT}/classifier)
expect_files(${OUT}/classifier classifier.ckpt)
run_ok(sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 0 --sample-steps 5
       --classifier ${OUT}/classifier/classifier.ckpt --classifier-scale 1 --out ${OUT}/cg)
# Classifier guidance of an unconditional model (the class is the classifier's).
run_ok(train --data ${data} ${tiny} --steps 2 --preview 0 --out ${OUT}/unconditional)
run_ok(sample --checkpoint ${OUT}/unconditional/model.ckpt --n 2 --label 1 --sample-steps 5
       --classifier ${OUT}/classifier/classifier.ckpt --classifier-scale 1 --out ${OUT}/cg_uncond)
expect_files(${OUT}/cg_uncond samples.png samples.npy)
# The training options of issue 13: v on a zero-terminal-SNR schedule, min-SNR weighting and
# per-channel offset noise train and sample from SNR = 0; info shows them.
run_ok(train --data ${data} ${tiny} --steps 2 --preview 2 --output v --zero-terminal-snr
       --snr-weighting min-snr --offset-noise 0.1 --out ${OUT}/options)
expect_output(ARGS info ${OUT}/options/model.ckpt OUTPUT_MATCHES
              "diffusion.zero_terminal_snr +true" "diffusion.snr_weighting +min-snr"
              "train.offset_noise +0.1\n" "train.offset_noise_channels +[13]\n")
run_ok(eval --checkpoint ${OUT}/model/model.ckpt --bound-n 4 --bound-stride 10 --fid-n 4
       --sample-steps 5 --ode-n 2 --ode-tolerance 1e-2
       --classifier ${OUT}/classifier/classifier.ckpt --out ${OUT}/eval)
file(READ ${OUT}/eval/metrics.json metrics)
if(NOT metrics MATCHES "\"ode_bits_per_dim\": {\"total\": [0-9]")
  message(FATAL_ERROR "eval wrote no ODE bits/dim:\n${metrics}")
endif()
if(NOT metrics MATCHES "\"bits_per_dim\": {\"n\": 4, \"stride\": 10, \"total\": [0-9]"
   OR NOT metrics MATCHES "\"samples_vs_real\": [0-9]")
  message(FATAL_ERROR "metrics.json lacks bits/dim or the Frechet distance:\n${metrics}")
endif()
# curve: eval's figures of a series of checkpoints (here the same file three times) as a PNG and a
# table with one row per file at x = 10, 20, 30; a metrics file without the figures is refused.
execute_process(COMMAND ${PROGRAM} curve ${OUT}/eval/metrics.json ${OUT}/eval/metrics.json
                        ${OUT}/eval/metrics.json --every 10 --out ${OUT}/curve/curve.png
                RESULT_VARIABLE result OUTPUT_VARIABLE table ERROR_VARIABLE err)
if(NOT result EQUAL 0 OR NOT EXISTS ${OUT}/curve/curve.png
   OR NOT table MATCHES "\\| 10 \\| [0-9.]+ \\| [0-9.]+ \\|\n\\| 20 \\|.*\\| 30 \\|")
  message(FATAL_ERROR "curve failed (${result}) or printed no 3-row table:\n${table}\n${err}")
endif()
file(WRITE ${OUT}/not_metrics.json "{\"checkpoint\": \"x\"}")
expect_failure("neither bits_per_dim.total nor" curve ${OUT}/not_metrics.json --out ${OUT}/c.png)
file(WRITE ${OUT}/broken.json "{not json")
expect_failure("is not JSON" curve ${OUT}/broken.json --out ${OUT}/c.png)

expect_failure("--label" sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 7
               --out ${OUT}/bad)
expect_failure("not a classifier" sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 0
               --classifier ${OUT}/model/model.ckpt --out ${OUT}/bad)
file(WRITE ${OUT}/broken.npy "not an npy file")
expect_failure("npy" train --data ${OUT}/broken.npy ${tiny} --steps 1 --out ${OUT}/bad)
# A resume that differs from the checkpoint's run is refused, naming every differing field.
set(rest --mult 1,2 --T 50 --batch 4 --threads 2 --class-conditional --steps 8)
expect_failure("model.base: checkpoint 8, this run 16" train --data ${data} --base 16 ${rest}
               --resume ${OUT}/model/model.ckpt --out ${OUT}/bad)
expect_failure("differs in 2 fields\n  diffusion.schedule: checkpoint linear, this run cosine\n  diffusion.output: checkpoint eps, this run v\n"
               train --data ${data} --base 8 ${rest} --schedule cosine --output v
               --resume ${OUT}/model/model.ckpt --out ${OUT}/bad)
file(COPY ${data}/ DESTINATION ${OUT}/fewer_images)
file(GLOB fewer ${OUT}/fewer_images/bars_vertical/*.png)
list(GET fewer 0 dropped)
file(REMOVE ${dropped})
expect_failure("differs in 2 fields.*data.rows: checkpoint 8, this run 7.*data.fingerprint: checkpoint"
               train --data ${OUT}/fewer_images --base 8 ${rest}
               --resume ${OUT}/model/model.ckpt --out ${OUT}/bad)
# ... while --init-from starts a new run from the weights, on other data.
run_ok(train --data ${OUT}/fewer_images ${tiny} --class-conditional --steps 2 --preview 0
       --init-from ${OUT}/model/model.ckpt --out ${OUT}/finetuned)
expect_files(${OUT}/finetuned model.ckpt loss.csv)

# info prints every recorded field, the step and the parameter count.
execute_process(COMMAND ${PROGRAM} info ${OUT}/model/model.ckpt RESULT_VARIABLE result
                OUTPUT_VARIABLE info)
foreach(pattern "step: 6\n" "parameters: [0-9]+\n" "diffusion.clip_x0 +true"
        "diffusion.decoder +discretized" "diffusion.variance +fixed-large" "model.kind +unet"
        "model.base +8\n" "model.mult +1,2\n" "model.classes +2\n" "data.rows +8\n"
        "train.batch +4\n")
  if(NOT result EQUAL 0 OR NOT info MATCHES "${pattern}")
    message(FATAL_ERROR "info (exit ${result}) printed no '${pattern}':\n${info}")
  endif()
endforeach()
# --threads is bounded with a message, never a crash.
foreach(bad 0 100000)
  expect_failure("--threads = ${bad}; allowed: 1\\.\\." train --data ${data} --base 8 --mult 1,2
                 --T 50 --steps 1 --threads ${bad} --out ${OUT}/bad)
  expect_failure("--threads = ${bad}; allowed: 1\\.\\." sample --checkpoint
                 ${OUT}/model/model.ckpt --threads ${bad} --out ${OUT}/bad)
endforeach()
