# Runs ddpm-bench on tiny sizes and checks that it prints one JSON object with every key (CTest).
# One thread: on a loaded 2-core machine a 2-thread run of tiny GEMMs spins for seconds in barriers.
execute_process(COMMAND ${PROGRAM} --small --repeats 1 --threads 1 OUTPUT_VARIABLE out
                ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ddpm-bench failed (${rc}): ${err}")
endif()
foreach(key threads toy_train_b256_ms toy_train_b4096_ms toy_ddpm1000_n10000_s toy_ddim50_n10000_s
            unet_train_b64_ms unet_forward_b64_ms toy_train_b256_gflops toy_train_b4096_gflops
            toy_ddpm1000_n10000_gflops toy_ddim50_n10000_gflops unet_train_b64_gflops
            unet_forward_b64_gflops point_train_s16_n2048_ms point_train_s16_n2048_gflops
            toy_ddim_nfe20_n10000_s toy_euler_nfe20_n10000_s toy_heun_nfe19_n10000_s
            toy_dpmpp2m_nfe20_n10000_s toy_unipc_nfe20_n10000_s toy_ddim_nfe20_n10000_gflops
            toy_euler_nfe20_n10000_gflops toy_heun_nfe19_n10000_gflops
            toy_dpmpp2m_nfe20_n10000_gflops toy_unipc_nfe20_n10000_gflops
            toy_dpmpp2m_trailing_nfe20_n10000_s toy_dpmpp2m_trailing_nfe20_n10000_gflops)
  string(JSON value ERROR_VARIABLE json_error GET "${out}" ${key})
  if(json_error)
    message(FATAL_ERROR "ddpm-bench output lacks '${key}' or is not JSON (${json_error}):\n${out}")
  endif()
  if(NOT value GREATER 0)
    message(FATAL_ERROR "ddpm-bench: '${key}' = '${value}', expected a positive number:\n${out}")
  endif()
endforeach()
message(STATUS "ddpm-bench smoke run: ${out}")
