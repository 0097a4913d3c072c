# The programs under mpirun (issue 15): ddpm-toy2d and ddpm-images train on 2 and 3 ranks into
# checkpoints, loss logs and samples byte-identical to one process's at the same --shards; a run
# resumes on another rank count; sample splits its rows across ranks; commands that run on one
# process, and too few shards, are refused with a message.
# MPIEXEC, NUMPROC_FLAG, TOY2D, IMAGES, POINTCLOUD (a program that runs on one process), DATA (a
# folder of PNGs), OUT.
file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})

function(run_ok)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${ARGV} failed (${result}):\n${out}\n${err}")
  endif()
endfunction()
function(mpi_ok ranks)
  run_ok(${MPIEXEC} ${NUMPROC_FLAG} ${ranks} ${ARGN})
endfunction()
function(expect_same_files a b)
  foreach(file ${ARGN})
    file(SHA256 ${a}/${file} hash_a)
    file(SHA256 ${b}/${file} hash_b)
    if(NOT hash_a STREQUAL hash_b)
      message(FATAL_ERROR "${a}/${file} and ${b}/${file} differ")
    endif()
  endforeach()
endfunction()
function(expect_mpi_refusal ranks pattern)
  execute_process(COMMAND ${MPIEXEC} ${NUMPROC_FLAG} ${ranks} ${ARGN} RESULT_VARIABLE result
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(result EQUAL 0 OR NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "${ARGN} on ${ranks} ranks gave exit ${result}, expected a refusal "
                        "matching '${pattern}':\n${out}\n${err}")
  endif()
endfunction()

# ddpm-toy2d: a constant learning rate, so that 10 + 10 resumed steps are the 20 straight ones.
set(toy_run --T 100 --batch 96 --n 300 --decay constant --warmup 0 --checkpoint-every 5)
set(toy ${toy_run} --shards 6)
run_ok(${TOY2D} train ${toy} --steps 20 --out ${OUT}/toy_1)
foreach(ranks 2 3)
  mpi_ok(${ranks} ${TOY2D} train ${toy} --steps 20 --out ${OUT}/toy_${ranks})
  expect_same_files(${OUT}/toy_1 ${OUT}/toy_${ranks} model.ckpt loss.csv samples.npy)
endforeach()
mpi_ok(2 ${TOY2D} train ${toy} --steps 10 --out ${OUT}/toy_half)
mpi_ok(3 ${TOY2D} train ${toy} --steps 20 --resume ${OUT}/toy_half/model.ckpt --out ${OUT}/toy_resumed)
expect_same_files(${OUT}/toy_1 ${OUT}/toy_resumed model.ckpt samples.npy)
run_ok(${TOY2D} sample --checkpoint ${OUT}/toy_1/model.ckpt --sampler ddim --n 301 --out ${OUT}/toy_sample_1)
mpi_ok(3 ${TOY2D} sample --checkpoint ${OUT}/toy_1/model.ckpt --sampler ddim --n 301 --out ${OUT}/toy_sample_3)
expect_same_files(${OUT}/toy_sample_1 ${OUT}/toy_sample_3 samples.npy samples.csv)
expect_mpi_refusal(2 "eval runs on one process, not 2 MPI ranks" ${TOY2D} eval
                   --checkpoint ${OUT}/toy_1/model.ckpt --out ${OUT}/toy_eval)
expect_mpi_refusal(3 "shards = 2; allowed: 3 \\(the ranks\\)" ${TOY2D} train ${toy_run} --shards 2
                   --steps 2 --out ${OUT}/toy_refused)

# ddpm-images: a class-conditional UNet with dropout and label dropout, and its DDIM preview.
set(images --data ${DATA} --base 8 --mult 1,2 --T 50 --batch 6 --shards 3 --dropout 0.1
    --class-conditional --steps 3 --preview 5)
run_ok(${IMAGES} train ${images} --out ${OUT}/images_1)
foreach(ranks 2 3)
  mpi_ok(${ranks} ${IMAGES} train ${images} --out ${OUT}/images_${ranks})
  expect_same_files(${OUT}/images_1 ${OUT}/images_${ranks} model.ckpt loss.csv samples.png)
endforeach()
run_ok(${IMAGES} sample --checkpoint ${OUT}/images_1/model.ckpt --sampler ddim --sample-steps 10
       --n 7 --out ${OUT}/images_sample_1)
mpi_ok(2 ${IMAGES} sample --checkpoint ${OUT}/images_1/model.ckpt --sampler ddim --sample-steps 10
       --n 7 --out ${OUT}/images_sample_2)
expect_same_files(${OUT}/images_sample_1 ${OUT}/images_sample_2 samples.npy samples.png)

# A program that runs on one process refuses to run as several copies.
expect_mpi_refusal(2 "ddpm-pointcloud: runs on one process, not 2 MPI ranks" ${POINTCLOUD} info
                   ${OUT}/toy_1/model.ckpt)
