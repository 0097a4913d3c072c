# Runs ddpm-exact-mixture on a small size with both samplers and checks its files.
foreach(sampler ddpm ddim)
  file(REMOVE_RECURSE ${OUT}/${sampler})
  execute_process(COMMAND ${PROGRAM} --sampler ${sampler} --steps 50 --n 300 --seed 3
                          --out ${OUT}/${sampler}
                  RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "ddpm-exact-mixture --sampler ${sampler} failed (${result})")
  endif()
  foreach(file samples.csv samples.png compare.png reverse.png)
    if(NOT EXISTS ${OUT}/${sampler}/${file})
      message(FATAL_ERROR "${sampler}: ${file} was not written")
    endif()
  endforeach()
  file(STRINGS ${OUT}/${sampler}/samples.csv lines)
  list(LENGTH lines count)
  list(GET lines 0 header)
  if(NOT header STREQUAL "x,y" OR NOT count EQUAL 301)
    message(FATAL_ERROR "${sampler}: samples.csv has header '${header}' and ${count} lines, expected 'x,y' and 301")
  endif()
endforeach()
# A bad option is refused with a non-zero exit.
execute_process(COMMAND ${PROGRAM} --sampler euler --out ${OUT}/bad RESULT_VARIABLE result
                OUTPUT_QUIET ERROR_QUIET)
if(result EQUAL 0)
  message(FATAL_ERROR "--sampler euler was accepted")
endif()
