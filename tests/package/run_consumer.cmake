# Builds and runs tests/package/consumer against ddpm. MODE=install installs ddpm into a private
# prefix first and consumes it with find_package; MODE=pkgconfig installs it the same way and
# builds the consumer with its plain Makefile and pkg-config; MODE=subdirectory and
# MODE=fetchcontent consume the source tree.
file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_source ${CMAKE_CURRENT_LIST_DIR}/consumer)

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "command failed (${result}): ${ARGV}")
  endif()
endfunction()

if(MODE STREQUAL "install" OR MODE STREQUAL "pkgconfig")
  run(${CMAKE_COMMAND} -S ${DDPM_SOURCE_DIR} -B ${WORK_DIR}/ddpm-build -DDDPM_BUILD_TESTS=OFF
      -DDDPM_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/ddpm-build)
endif()
file(MAKE_DIRECTORY ${WORK_DIR}/consumer-build)
if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} -S ${consumer_source} -B ${WORK_DIR}/consumer-build
      -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release)
elseif(MODE STREQUAL "pkgconfig")
  set(ENV{PKG_CONFIG_PATH} ${WORK_DIR}/prefix/share/pkgconfig)
  run(make -f ${consumer_source}/Makefile OUT=${WORK_DIR}/consumer-build)
elseif(MODE STREQUAL "fetchcontent")
  run(${CMAKE_COMMAND} -S ${consumer_source} -B ${WORK_DIR}/consumer-build
      -DDDPM_FETCH_DIR=${DDPM_SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
else()
  run(${CMAKE_COMMAND} -S ${consumer_source} -B ${WORK_DIR}/consumer-build
      -DDDPM_SOURCE_DIR=${DDPM_SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
endif()
if(NOT MODE STREQUAL "pkgconfig")
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
endif()
run(${WORK_DIR}/consumer-build/ddpm_consumer)
