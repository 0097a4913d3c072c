# Runs ddpm-toy2d train --data on a user's CSV (and then on the .npy its samples are written to):
# the standardization lands in the checkpoint, samples come back in the user's units, resume and
# eval work, and bad data files are refused with a message.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)
function(expect_failure pattern)
  execute_process(COMMAND ${PROGRAM} ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(result EQUAL 0 OR NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "ddpm-toy2d ${ARGN} gave exit ${result}, expected a failure matching "
                        "'${pattern}':\n${out}\n${err}")
  endif()
endfunction()
# The mean of a samples.csv column in tenths (values like "101.37" or "-49.8"; integer math only).
function(column_mean_tenths file column out_var)
  file(STRINGS ${file} lines)
  list(POP_FRONT lines header)
  set(sum 0)
  set(count 0)
  foreach(line ${lines})
    string(REPLACE "," ";" fields "${line}")
    list(GET fields ${column} value)
    if(NOT value MATCHES "^(-?)([0-9]+)(\\.([0-9]))?")
      message(FATAL_ERROR "${file}: '${value}' is far from the data (not a plain decimal)")
    endif()
    set(tenths "${CMAKE_MATCH_2}0")
    if(CMAKE_MATCH_4)
      set(tenths "${CMAKE_MATCH_2}${CMAKE_MATCH_4}")
    endif()
    if(CMAKE_MATCH_1 STREQUAL "-")
      math(EXPR sum "${sum} - ${tenths}")
    else()
      math(EXPR sum "${sum} + ${tenths}")
    endif()
    math(EXPR count "${count} + 1")
  endforeach()
  math(EXPR mean "${sum} / ${count}")
  set(${out_var} ${mean} PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${OUT})
file(MAKE_DIRECTORY ${OUT})

# 80 points centred exactly at (100, -50): x = 100 + {-2, -1, 1, 2}, y = -50 + {-3, 3}, so the
# standardization is mean (100, -50) and std (sqrt(2.5), 3). Columns in another order and an extra
# column: the reader picks x and y by name.
set(csv "label,y,x\n")
foreach(k RANGE 0 79)
  math(EXPR i "${k} % 4")
  math(EXPR j "(${k} / 4) % 2")
  set(dxs 98 99 101 102)
  set(dys -53 -47)
  list(GET dxs ${i} x)
  list(GET dys ${j} y)
  string(APPEND csv "${k},${y},${x}\n")
endforeach()
file(WRITE ${OUT}/points.csv "${csv}")

# 300 steps at a high learning rate without EMA fit these points well enough (about 2 s); the
# constant rate lets a resumed run be compared with a straight one.
set(small --width 32 --depth 2 --embedding 16 --T 100 --batch 64 --n 200 --sample-steps 20 --seed 4)
set(fit --lr 3e-3 --ema 0 --decay constant)
run_ok(train --data ${OUT}/points.csv --steps 300 ${fit} ${small} --checkpoint-every 100
       --out ${OUT}/train)
expect_files(${OUT}/train model.ckpt loss.csv loss.png forward.png reverse.png samples.csv samples.npy
             samples.png compare.png)

# The standardization and the frame are in the checkpoint's metadata.
file(STRINGS ${OUT}/train/model.ckpt texts)
foreach(expected "data.mean" "100,-50" "data.std" "1.5811388300841898,3" "data.frame"
        "data.fingerprint")
  string(FIND "${texts}" "${expected}" position)
  if(position EQUAL -1)
    message(FATAL_ERROR "model.ckpt has no '${expected}' in its metadata")
  endif()
endforeach()

# Samples come back in the user's units: 300 samples have their mean near (100, -50), within 1.5
# standard deviations of the data on each axis (seeds are fixed; this run gives about (100.0, -49.8)).
run_ok(sample --checkpoint ${OUT}/train/model.ckpt --sampler ddim --n 300 --out ${OUT}/sample)
expect_files(${OUT}/sample samples.csv samples.npy samples.png compare.png reverse.png)
column_mean_tenths(${OUT}/sample/samples.csv 0 mean_x)
column_mean_tenths(${OUT}/sample/samples.csv 1 mean_y)
if(mean_x LESS 976 OR mean_x GREATER 1024 OR mean_y LESS -545 OR mean_y GREATER -455)
  message(FATAL_ERROR "samples' mean is (${mean_x}, ${mean_y}) tenths, expected near (1000, -500)")
endif()

# Resuming continues at step 301 on the same data; resuming without --data is refused.
run_ok(train --data ${OUT}/points.csv --steps 320 ${fit} ${small} --resume ${OUT}/train/model.ckpt
       --out ${OUT}/resumed)
file(STRINGS ${OUT}/resumed/loss.csv resumed_lines)
list(GET resumed_lines 1 first)
if(NOT first MATCHES "^301,")
  message(FATAL_ERROR "the resumed run starts at '${first}', expected step 301")
endif()
# Other points in the same file are other data: the resume is refused (rows, fingerprint, ...).
file(WRITE ${OUT}/points_changed.csv "${csv}5,-50,100\n")
expect_failure("data.rows: checkpoint 80, this run 81.*data.fingerprint: checkpoint"
               train --data ${OUT}/points_changed.csv --steps 320 ${fit} ${small}
               --resume ${OUT}/train/model.ckpt --out ${OUT}/bad)
# Batches are drawn by (seed, step, row), so step 301 of the resumed run trains on the batch of
# step 301 of a straight 320-step run and has its loss. (Only the first 6 digits are compared: the
# trainer's floating-point sums may differ in the last bits between the two processes.)
run_ok(train --data ${OUT}/points.csv --steps 320 ${fit} ${small} --out ${OUT}/straight)
file(STRINGS ${OUT}/straight/loss.csv straight_lines)
list(GET straight_lines 301 straight_first)
foreach(line straight_first first)
  string(REGEX MATCH "^301,([0-9.e+-]+)," ignored "${${line}}")
  string(SUBSTRING "${CMAKE_MATCH_1}" 0 8 ${line}_loss)
endforeach()
message(STATUS "step 301 loss: ${first_loss} (resumed), ${straight_first_loss} (straight)")
if(first_loss STREQUAL "" OR NOT straight_first_loss STREQUAL first_loss)
  message(FATAL_ERROR "step 301 differs between the resumed and the straight run:\n"
                      "${first}\n${straight_first}")
endif()
expect_failure("data.name: checkpoint file, this run swissroll" train --steps 320 ${fit} ${small}
               --resume ${OUT}/train/model.ckpt --out ${OUT}/bad)

# eval compares with the file's points: min(n, N) = 80 of them, the floor from two halves of 40.
run_ok(eval --checkpoint ${OUT}/train/model.ckpt --sampler ddim --sample-steps 10 --n 100
       --bound-n 50 --out ${OUT}/eval)
file(READ ${OUT}/eval/metrics.json json)
string(JSON dataset GET "${json}" dataset)
string(JSON data_n GET "${json}" data_n)
string(JSON floor_n GET "${json}" floor n)
string(JSON mean_x GET "${json}" standardization mean 0)
string(JSON std_y GET "${json}" standardization std 1)
string(JSON bound_n GET "${json}" nll_bound n)
if(NOT dataset STREQUAL "file" OR NOT data_n EQUAL 80 OR NOT floor_n EQUAL 40 OR NOT mean_x EQUAL 100
   OR NOT std_y EQUAL 3 OR NOT bound_n EQUAL 50)
  message(FATAL_ERROR "metrics.json for --data is wrong:\n${json}")
endif()
file(STRINGS ${OUT}/eval/data.csv data_lines)
list(LENGTH data_lines count)
if(NOT count EQUAL 81)
  message(FATAL_ERROR "eval's data.csv has ${count} lines, expected a header and 80 points")
endif()

# The samples.npy written above (float32, 300 x 2) is itself a data file.
run_ok(train --data ${OUT}/sample/samples.npy --steps 20 ${small} --out ${OUT}/npy)
expect_files(${OUT}/npy model.ckpt samples.csv samples.npy)
file(STRINGS ${OUT}/npy/model.ckpt texts)
string(FIND "${texts}" "data.rows" position)
if(position EQUAL -1)
  message(FATAL_ERROR "the .npy run's model.ckpt has no data.rows metadata")
endif()

# Bad data files are refused with a message naming the problem.
file(WRITE ${OUT}/three.csv "a,b,c\n1,2,3\n4,5,6\n7,8,9\n1,1,1\n")
expect_failure("expected columns named x and y, or exactly two columns; found a b c"
               train --data ${OUT}/three.csv --steps 2 ${small} --out ${OUT}/bad)
file(WRITE ${OUT}/constant.csv "x,y\n1,2\n1,3\n1,4\n1,5\n")
expect_failure("x has the same value in every row" train --data ${OUT}/constant.csv --steps 2
               ${small} --out ${OUT}/bad)
file(WRITE ${OUT}/few.csv "x,y\n1,2\n3,4\n")
expect_failure("has 2 points; between 4 and 2\\^31 are needed" train --data ${OUT}/few.csv
               --steps 2 ${small} --out ${OUT}/bad)
file(WRITE ${OUT}/broken.npy "not a numpy file at all")
expect_failure("not a .npy file" train --data ${OUT}/broken.npy --steps 2 ${small} --out ${OUT}/bad)
expect_failure("excludes" train --data ${OUT}/points.csv --dataset moons --steps 2 --out ${OUT}/bad)
