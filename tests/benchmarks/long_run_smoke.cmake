# benchmarks/images_long_run.sh end to end on tiny images (CTest): three segments of 3 seconds,
# each resumed from the last (the step count grows), evaluated, and drawn as a 3-row curve; a rerun
# finds everything done and redraws it; a missing option is refused by name.
set(data ${SOURCE_DIR}/tests/examples/fixtures/tiny_images)
set(tiny --base 8 --mult 1,2 --T 50 --batch 4)
file(REMOVE_RECURSE ${OUT})
execute_process(COMMAND ${PROGRAM} train-classifier --data ${data} ${tiny} --steps 3 --threads 1
                        --out ${OUT}/classifier
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train-classifier failed (${rc}): ${err}")
endif()
set(run bash ${SOURCE_DIR}/benchmarks/images_long_run.sh --images ${PROGRAM}
    --classifier ${OUT}/classifier/classifier.ckpt --out ${OUT}/long --minutes 0.05 --segments 3
    --threads 1 --bound-n 2 --fid-n 4 -- --data ${data} ${tiny})
foreach(attempt first rerun)
  execute_process(COMMAND ${run} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "images_long_run.sh (${attempt}) failed (${rc}):\n${out}\n${err}")
  endif()
endforeach()
file(READ ${OUT}/long/curve.md table)
if(NOT table MATCHES "\\| 0.05 \\| [0-9.]+ \\| [0-9.]+ \\|\n\\| 0.1 \\| [0-9.]+ \\| [0-9.]+ \\|\n\\| 0.15 \\| "
   OR NOT EXISTS ${OUT}/long/curve.png)
  message(FATAL_ERROR "no 3-row curve table or no curve.png:\n${table}")
endif()
string(REGEX MATCH "steps at the end of each segment: ([0-9]+) ([0-9]+) ([0-9]+)" steps "${table}")
if(NOT steps OR NOT CMAKE_MATCH_1 LESS CMAKE_MATCH_2 OR NOT CMAKE_MATCH_2 LESS CMAKE_MATCH_3)
  message(FATAL_ERROR "the segments do not continue one run:\n${table}")
endif()
execute_process(COMMAND bash ${SOURCE_DIR}/benchmarks/images_long_run.sh --images ${PROGRAM}
                        --out ${OUT}/x
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "--classifier is required")
  message(FATAL_ERROR "a missing --classifier was not refused by name (${rc}): ${err}")
endif()
