# A CUDA LibTorch from a torch wheel, configured without nvcc.
#
#   include(scripts/cmake/thinkingvit_torch_cuda.cmake)
#   thinkingvit_torch_cuda_runtime(<prefix> TORCH_DIR <dir>)   # before find_package(Torch)
#
# thinkingvit compiles no device code, and a PyPI torch wheel carries the CUDA headers and
# runtime libraries (nvidia/cu<N>/{include,lib} for CUDA 13; nvidia/cuda_runtime, nvidia/cublas,
# ... for CUDA 12). LibTorch's own config cannot use them: Caffe2's public/cuda.cmake runs the old
# FindCUDA (nvcc and an unversioned libcudart.so, which the wheel lacks) and enable_language(CUDA).
# It returns at once, though, when torch::cudart already exists (its include guard), and
# torch::cudart is the only CUDA target Caffe2Targets.cmake names. This function defines
# torch::cudart from the wheel's CUDA runtime, so the stock TorchConfig then configures the CUDA
# LibTorch (torch_cuda, c10_cuda, USE_C10D_NCCL) with no toolkit installed. The host headers
# cuda_runtime.h needs come from two more wheels, which torch does not require: nvidia-cuda-crt
# (crt/host_config.h) and nvidia-cuda-cccl (nv/target), i.e. `pip install
# "cuda-toolkit[crt,cccl]==<torch's cuda-toolkit pin>"`; without them the function says so.
#
# Sets <prefix>_FOUND, <prefix>_VERSION (the nvidia-cuda-runtime wheel's version, else the
# CUDART_VERSION of cuda_runtime_api.h), <prefix>_ROOT (the folder holding the runtime),
# <prefix>_INCLUDE_DIRS, <prefix>_LIBRARY, and <prefix>_REASON (why not, when not found).
include_guard(GLOBAL)

function(thinkingvit_torch_cuda_runtime prefix)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "TORCH_DIR" "")
  set(${prefix}_FOUND FALSE PARENT_SCOPE)
  foreach(_var VERSION ROOT INCLUDE_DIRS LIBRARY REASON)
    set(${prefix}_${_var} "" PARENT_SCOPE)
  endforeach()

  set(_caffe2 "${ARG_TORCH_DIR}/../Caffe2/Caffe2Config.cmake")
  if(NOT EXISTS "${_caffe2}")
    set(${prefix}_REASON "no Caffe2Config.cmake beside ${ARG_TORCH_DIR}" PARENT_SCOPE)
    return()
  endif()
  # A CPU build's Caffe2Config.cmake still holds set(CAFFE2_USE_CUDA ON), under if(OFF): go by
  # the library instead.
  get_filename_component(_torch_root "${ARG_TORCH_DIR}/../../.." ABSOLUTE)
  if(NOT EXISTS "${_torch_root}/lib/libtorch_cuda.so")
    set(${prefix}_REASON "the LibTorch in ${_torch_root} is not a CUDA build (no lib/libtorch_cuda.so)"
        PARENT_SCOPE)
    return()
  endif()
  get_filename_component(_site_packages "${ARG_TORCH_DIR}/../../../.." ABSOLUTE)

  # The runtime: nvidia/cu<N> (newest first), then the CUDA 12 wheels' nvidia/cuda_runtime.
  file(GLOB _roots LIST_DIRECTORIES true "${_site_packages}/nvidia/cu[0-9]*")
  list(SORT _roots COMPARE NATURAL ORDER DESCENDING)
  list(APPEND _roots "${_site_packages}/nvidia/cuda_runtime")
  set(_root "")
  set(_library "")
  foreach(_dir IN LISTS _roots)
    if(EXISTS "${_dir}/include/cuda_runtime_api.h")
      file(GLOB _libs "${_dir}/lib/libcudart.so*")
      if(_libs)
        list(SORT _libs)  # libcudart.so, then libcudart.so.<major>, ...: the shortest name first
        list(GET _libs 0 _library)
        set(_root "${_dir}")
        break()
      endif()
    endif()
  endforeach()
  if(NOT _root)
    string(CONCAT _reason "there is no CUDA runtime wheel (nvidia/cu<N> or nvidia/cuda_runtime "
                  "with include/cuda_runtime_api.h and lib/libcudart.so*) in ${_site_packages}")
    set(${prefix}_REASON "${_reason}" PARENT_SCOPE)
    return()
  endif()

  # Headers: the runtime's, and the other CUDA wheels' (CUDA 12 puts cuBLAS, cuSPARSE, cuSOLVER,
  # ... in folders of their own; ATen/cuda/CUDAContext.h includes them). NCCL's stays out: the
  # NCCL search (thinkingvit_nccl.cmake) chooses that one.
  set(_includes "${_root}/include")
  file(GLOB _others LIST_DIRECTORIES true "${_site_packages}/nvidia/*/include")
  list(SORT _others)
  foreach(_dir IN LISTS _others)
    if(IS_DIRECTORY "${_dir}" AND NOT _dir MATCHES "/nvidia/nccl/include$")
      list(APPEND _includes "${_dir}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _includes)

  # Host code including the CUDA runtime headers (c10/cuda, ATen/cuda) also needs the nvcc
  # package's crt/ headers (cuda_runtime.h includes crt/host_config.h) and CCCL's nv/target
  # (cuda_fp16.h). torch does not pull in those wheels; cuda-toolkit's crt and cccl extras do.
  set(_missing "")
  foreach(_header crt/host_config.h nv/target)
    set(_have FALSE)
    foreach(_dir IN LISTS _includes)
      if(EXISTS "${_dir}/${_header}")
        set(_have TRUE)
        break()
      endif()
    endforeach()
    if(NOT _have)
      list(APPEND _missing "${_header}")
    endif()
  endforeach()
  if(_missing)
    set(_install "nvidia-cuda-crt nvidia-cuda-cccl (the versions of nvidia-cuda-runtime)")
    file(GLOB _metadata "${_site_packages}/torch-*.dist-info/METADATA")
    foreach(_file IN LISTS _metadata)
      file(STRINGS "${_file}" _pin REGEX "^Requires-Dist: cuda-toolkit\[[a-z0-9_,]*\] *==")
      if(_pin MATCHES "== *([0-9.]+)")
        set(_install "\"cuda-toolkit[crt,cccl]==${CMAKE_MATCH_1}\"")
      endif()
    endforeach()
    string(REPLACE ";" " and " _missing "${_missing}")
    string(CONCAT _reason "the CUDA headers in ${_root}/include lack ${_missing}, which host "
                  "code including cuda_runtime.h needs: `pip install ${_install}` into torch's "
                  "environment (${_site_packages})")
    set(${prefix}_REASON "${_reason}" PARENT_SCOPE)
    return()
  endif()

  # Version: the wheel's, when it agrees with the header's major.minor.
  file(STRINGS "${_root}/include/cuda_runtime_api.h" _line REGEX "^#define CUDART_VERSION[ \t]+[0-9]+")
  string(REGEX MATCH "[0-9]+$" _code "${_line}")
  set(_version "")
  if(_code)
    math(EXPR _major "${_code} / 1000")
    math(EXPR _minor "(${_code} % 1000) / 10")
    set(_version "${_major}.${_minor}")
    file(GLOB _dist LIST_DIRECTORIES true "${_site_packages}/nvidia_cuda_runtime*-*.dist-info")
    foreach(_dir IN LISTS _dist)
      if(_dir MATCHES "-([0-9]+\\.[0-9]+(\\.[0-9]+)*)\\.dist-info$")
        set(_wheel_version "${CMAKE_MATCH_1}")
        if(_wheel_version MATCHES "^${_major}\\.${_minor}(\\.|$)")
          set(_version "${_wheel_version}")
          break()
        endif()
      endif()
    endforeach()
  endif()

  if(NOT TARGET torch::cudart)
    add_library(torch::cudart INTERFACE IMPORTED)
    set_target_properties(torch::cudart PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${_includes}"
      INTERFACE_LINK_LIBRARIES "${_library}")
  endif()
  set(${prefix}_FOUND TRUE PARENT_SCOPE)
  set(${prefix}_VERSION "${_version}" PARENT_SCOPE)
  set(${prefix}_ROOT "${_root}" PARENT_SCOPE)
  set(${prefix}_INCLUDE_DIRS "${_includes}" PARENT_SCOPE)
  set(${prefix}_LIBRARY "${_library}" PARENT_SCOPE)
endfunction()
