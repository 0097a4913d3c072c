# Helpers shared by the end-to-end smoke tests of the example programs (include()d by them).
# PROGRAM is the program under test.
function(run_ok)
  execute_process(COMMAND ${PROGRAM} ${ARGV} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} ${ARGV} failed (${result}):\n${out}\n${err}")
  endif()
endfunction()
function(expect_files dir)
  foreach(file ${ARGN})
    if(NOT EXISTS ${dir}/${file})
      message(FATAL_ERROR "${dir}/${file} was not written")
    endif()
  endforeach()
endfunction()
# Runs the program and expects it to fail with a message matching `pattern`: an exit status in
# 1..127 (the program's 1 or the option parser's 10x), never a crash (a signal such as SIGSEGV).
function(expect_refusal pattern)
  execute_process(COMMAND ${PROGRAM} ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result MATCHES "^[0-9]+$" OR result EQUAL 0 OR result GREATER 127
     OR NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "${PROGRAM} ${ARGN} gave exit ${result}, expected a refusal with a message "
                        "matching '${pattern}':\n${out}\n${err}")
  endif()
endfunction()
# Runs the program and expects its output to match every pattern given after OUTPUT_MATCHES.
function(expect_output)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "" "ARGS;OUTPUT_MATCHES")
  execute_process(COMMAND ${PROGRAM} ${arg_ARGS} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${PROGRAM} ${arg_ARGS} failed (${result}):\n${out}\n${err}")
  endif()
  foreach(pattern ${arg_OUTPUT_MATCHES})
    if(NOT "${out}" MATCHES "${pattern}")
      message(FATAL_ERROR "${PROGRAM} ${arg_ARGS} printed no '${pattern}':\n${out}")
    endif()
  endforeach()
endfunction()
# --threads out of 1..4 x hardware threads is refused with a message naming it, for `command`.
function(expect_thread_bounds)
  foreach(bad 0 100000)
    expect_refusal("--threads = ${bad}; allowed: 1\\.\\." ${ARGN} --threads ${bad})
  endforeach()
endfunction()
