# CUDA is optional: built when nvcc is found, unless SAMFAST_WITH_CUDA=OFF.
# SAMFAST_REQUIRE_CUDA=ON turns "no nvcc" into an error (CI sets it).
option(SAMFAST_WITH_CUDA "Build the CUDA kernels when nvcc is found" ON)
option(SAMFAST_REQUIRE_CUDA "Fail when CUDA cannot be built" OFF)
set(SAMFAST_CUDA_ARCHS "" CACHE STRING "CUDA archs (e.g. 87;90); default 75;80;86;87;89;90 + PTX")

set(SAMFAST_CUDA_ENABLED OFF)
if(SAMFAST_WITH_CUDA OR SAMFAST_REQUIRE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(SAMFAST_CUDA_ARCHS)
      set(CMAKE_CUDA_ARCHITECTURES "${SAMFAST_CUDA_ARCHS}")
    elseif(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      set(CMAKE_CUDA_ARCHITECTURES "75-real;80-real;86-real;87-real;89-real;90")
    endif()
    enable_language(CUDA)
    set(SAMFAST_CUDA_ENABLED ON)
  endif()
endif()

if(SAMFAST_REQUIRE_CUDA AND NOT SAMFAST_CUDA_ENABLED)
  message(FATAL_ERROR "SAMFAST_REQUIRE_CUDA is set but no CUDA compiler (nvcc) was found")
endif()

if(SAMFAST_CUDA_ENABLED)
  find_package(CUDAToolkit REQUIRED)
  file(GLOB SAMFAST_CUDA_SOURCES CONFIGURE_DEPENDS csrc/cuda/*.cu csrc/cuda/*.cpp)
  target_sources(_C PRIVATE ${SAMFAST_CUDA_SOURCES})
  # _C exists before enable_language(CUDA), so it did not pick CMAKE_CUDA_ARCHITECTURES up itself.
  set_target_properties(_C PROPERTIES CUDA_STANDARD 17 CUDA_RUNTIME_LIBRARY Static
                                      CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(_C PRIVATE SAMFAST_WITH_CUDA=1)
  target_compile_options(_C PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 --use_fast_math -lineinfo --expt-relaxed-constexpr>)
  # cudart is linked statically so `import samfast._C` works on machines without a GPU driver.
  target_link_libraries(_C PRIVATE CUDA::cudart_static)
  message(STATUS "samfast: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES}")
else()
  message(STATUS "samfast: building without CUDA")
endif()
