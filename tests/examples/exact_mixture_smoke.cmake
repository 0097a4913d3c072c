# Runs ddpm-exact-mixture on a small size with every sampler and checks its files.
foreach(sampler ddpm ddim euler euler-a heun dpm++2m dpm++3m dpm++2m-sde unipc)
  file(REMOVE_RECURSE ${OUT}/${sampler})
  execute_process(COMMAND ${PROGRAM} --sampler ${sampler} --steps 20 --n 300 --seed 3
                          --out ${OUT}/${sampler}
                  OUTPUT_VARIABLE output
                  RESULT_VARIABLE result)
  if(NOT output MATCHES "network evaluations")
    message(FATAL_ERROR "${sampler}: the network evaluations were not printed: ${output}")
  endif()
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
# Bad options are refused with a non-zero exit: an unknown sampler, and ancestral sampling on a
# grid between the schedule's steps.
execute_process(COMMAND ${PROGRAM} --sampler euler2 --out ${OUT}/bad RESULT_VARIABLE result
                OUTPUT_QUIET ERROR_QUIET)
if(result EQUAL 0)
  message(FATAL_ERROR "--sampler euler2 was accepted")
endif()
execute_process(COMMAND ${PROGRAM} --sampler ddpm --grid karras --out ${OUT}/bad
                RESULT_VARIABLE result OUTPUT_QUIET ERROR_VARIABLE error)
if(result EQUAL 0 OR NOT error MATCHES "grid")
  message(FATAL_ERROR "--sampler ddpm --grid karras was accepted or not explained: ${error}")
endif()
# likelihood: the ODE NLL of fresh points, one CSV row each.
execute_process(COMMAND ${PROGRAM} likelihood --n 40 --seed 2 --tolerance 1e-3
                        --out ${OUT}/likelihood
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "ddpm-exact-mixture likelihood failed (${result})")
endif()
file(STRINGS ${OUT}/likelihood/likelihood.csv lines)
list(LENGTH lines count)
list(GET lines 0 header)
if(NOT header STREQUAL "x,y,nll_ode" OR NOT count EQUAL 41)
  message(FATAL_ERROR "likelihood.csv has header '${header}' and ${count} lines, expected 'x,y,nll_ode' and 41")
endif()
# RePaint with x known: the summary and inpaint.csv, the known coordinate kept exactly.
execute_process(COMMAND ${PROGRAM} inpaint --x 2 --n 50 --steps 20 --jump 5 --resample 2
                        --out ${OUT}/inpaint
                OUTPUT_VARIABLE output RESULT_VARIABLE result)
if(NOT result EQUAL 0 OR NOT output MATCHES "exact conditional mean")
  message(FATAL_ERROR "ddpm-exact-mixture inpaint failed (${result}): ${output}")
endif()
file(STRINGS ${OUT}/inpaint/inpaint.csv lines)
list(LENGTH lines count)
list(GET lines 1 first)
if(NOT count EQUAL 51 OR NOT first MATCHES "^2,")
  message(FATAL_ERROR "inpaint.csv has ${count} lines, first row '${first}'")
endif()
