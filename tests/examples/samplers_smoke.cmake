# Runs ddpm-samplers compare on a small size, with the exact denoiser and with a tiny trained
# ddpm-toy2d model (TOY2D), and checks table.csv, samplers.png, the Markdown table and refusals.
include(${CMAKE_CURRENT_LIST_DIR}/smoke_helpers.cmake)

file(REMOVE_RECURSE ${OUT})
set(header "sampler,grid,steps,nfe,mmd2,sliced_w1,seconds")
# Every sampler x grid at two budgets: fresh data, ancestral-1000, 2 x (4 + 4 + 7 x 3) rows, the
# floor and its sd, and the header.
expect_output(ARGS compare --nfe 5,10 --n 200 --floor-pairs 2 --seed 3 --threads 1
                   --out ${OUT}/exact
              OUTPUT_MATCHES "\\| sampler \\| grid \\| steps \\| NFE \\|" "Floor \\(data vs data"
                             "\\| dpm\\+\\+2m \\| karras \\| 10 \\| 10 \\|")
expect_files(${OUT}/exact table.csv samplers.png)
file(STRINGS ${OUT}/exact/table.csv lines)
list(LENGTH lines count)
list(GET lines 0 first)
if(NOT first STREQUAL header OR NOT count EQUAL 63)
  message(FATAL_ERROR "table.csv has header '${first}' and ${count} lines, expected '${header}' and 63")
endif()
# The reference row, Heun within its budget (5 steps = 9 evaluations <= 10) and the floor.
foreach(prefix "ddpm,evenly,1000,1000," "heun,karras,5,9," "heun,trailing,3,5," "ddim,leading,10,10,"
               "unipc,exponential,5,5," "data,fresh,0,0," "data,floor,0,0," "data,floor-sd,0,0,")
  set(rest ${lines})
  list(FILTER rest EXCLUDE REGEX "^${prefix}")
  list(LENGTH rest left)
  math(EXPR expected "${count} - 1")
  if(NOT left EQUAL expected)
    message(FATAL_ERROR "table.csv has no single row starting '${prefix}':\n${lines}")
  endif()
endforeach()

# A trained model: 40 steps of a tiny 8gaussians network, then two samplers at one budget.
set(PROGRAM_SAMPLERS ${PROGRAM})
set(PROGRAM ${TOY2D})
run_ok(train --dataset 8gaussians --steps 40 --width 32 --depth 2 --embedding 16 --T 100
       --batch 64 --n 100 --sample-steps 10 --out ${OUT}/toy)
set(PROGRAM ${PROGRAM_SAMPLERS})
expect_output(ARGS compare --checkpoint ${OUT}/toy/model.ckpt --samplers ddim,heun --nfe 5
                   --picture-nfe 5 --n 200 --floor-pairs 2 --threads 1 --out ${OUT}/trained
              OUTPUT_MATCHES "8gaussians model" "\\| ddpm \\| evenly \\| 100 \\| 100 \\|")
file(STRINGS ${OUT}/trained/table.csv lines)
list(LENGTH lines count)
if(NOT count EQUAL 12)
  message(FATAL_ERROR "trained table.csv has ${count} lines, expected 12 (header, data, ancestral-100, "
                      "4 ddim + 3 heun rows, floor, floor-sd)")
endif()
expect_files(${OUT}/trained samplers.png)

# Refusals: a picture budget that is not measured, an unknown sampler, a zero budget, a missing
# checkpoint.
expect_refusal("picture-nfe" compare --nfe 5 --picture-nfe 10 --n 50 --out ${OUT}/bad)
expect_refusal("samplers" compare --samplers euler2 --out ${OUT}/bad)
expect_refusal("nfe" compare --nfe 0 --out ${OUT}/bad)
expect_refusal("missing.ckpt" compare --checkpoint ${OUT}/missing.ckpt --out ${OUT}/bad)
