# Runs ddpm-images end to end on a folder of eight 8x8 PNGs in two class subfolders: a
# class-conditional tiny UNet trains, resumes, samples (plain, classifier-free guided, classifier
# guided) into samples.npy and one PNG per sample; the classifier trains; eval writes bits/dim and
# the classifier-feature Frechet distance; bad input is refused with a message.
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
run_ok(eval --checkpoint ${OUT}/model/model.ckpt --bound-n 4 --bound-stride 10 --fid-n 4
       --sample-steps 5 --classifier ${OUT}/classifier/classifier.ckpt --out ${OUT}/eval)
file(READ ${OUT}/eval/metrics.json metrics)
if(NOT metrics MATCHES "\"bits_per_dim\": {\"n\": 4, \"stride\": 10, \"total\": [0-9]"
   OR NOT metrics MATCHES "\"samples_vs_real\": [0-9]")
  message(FATAL_ERROR "metrics.json lacks bits/dim or the Frechet distance:\n${metrics}")
endif()

expect_failure("--label" sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 7
               --out ${OUT}/bad)
expect_failure("not a classifier" sample --checkpoint ${OUT}/model/model.ckpt --n 2 --label 0
               --classifier ${OUT}/model/model.ckpt --out ${OUT}/bad)
file(WRITE ${OUT}/broken.npy "not an npy file")
expect_failure("npy" train --data ${OUT}/broken.npy ${tiny} --steps 1 --out ${OUT}/bad)
expect_failure("architecture mismatch" train --data ${data} --base 16 --mult 1,2 --T 50 --steps 8
               --resume ${OUT}/model/model.ckpt --out ${OUT}/bad)
