# Finds NCCL wherever it lives and checks it against the NCCL that LibTorch was built with.
#
#   include(scripts/cmake/thinkingvit_nccl.cmake)
#   thinkingvit_find_nccl(<prefix>
#     [REQUIRED]                     # FATAL_ERROR when none is found (else <prefix>_FOUND is FALSE)
#     [QUIET]                        # no STATUS line
#     [TORCH_SITE_PACKAGES <dir>]    # the site-packages holding torch (the pip wheel layouts)
#     [REQUIRED_VERSION <x.y[.z]>]   # LibTorch's NCCL; default: see "Reference version"
#     [CUDA_PREFIXES <dir>...]       # CUDA toolkits to look in (default below)
#     [SYSTEM_PREFIXES <dir>...])    # system prefixes (default /usr;/usr/local)
#
# Searched in this order; the first place that holds both include/nccl.h and libnccl.so.2 (or
# libnccl.so) wins:
#   1. NCCL_ROOT (CMake variable), then $ENV{NCCL_ROOT}
#   2. NCCL_INCLUDE_DIR + NCCL_LIB_DIR (CMake variables, else environment: PyTorch's own names)
#   3. $ENV{NCCL_HOME} (NCCL's and nccl-tests' name)
#   4. the pip wheel beside torch: <site-packages>/nvidia/nccl, then <site-packages>/nvidia/cu<N>
#   5. conda: $ENV{CONDA_PREFIX}
#   6. the CUDA toolkit's own copy: CUDAToolkit_ROOT, $ENV{CUDAToolkit_ROOT}, $ENV{CUDA_HOME},
#      $ENV{CUDA_PATH}, the toolkit find_package(CUDAToolkit) found, nvcc's, /usr/local/cuda,
#      /usr/local/cuda-* (newest first); THINKINGVIT_NCCL_CUDA_PREFIXES replaces this list
#   7. the system: THINKINGVIT_NCCL_SYSTEM_PREFIXES (default /usr;/usr/local), as Debian's and
#      Ubuntu's libnccl-dev and NGC containers lay it out (include/, lib/<multiarch>/)
# Under every prefix: include/ and targets/<arch>/include for the header; lib/, lib64/,
# lib/<multiarch>/ and targets/<arch>/lib for the library. A place named explicitly (1-3) that
# holds no NCCL is an error, not a reason to look further.
#
# Reference version (what LibTorch was built with): REQUIRED_VERSION when given, else the
# THINKINGVIT_TORCH_NCCL_VERSION variable, else the "Requires-Dist: nvidia-nccl-cu<N>==X.Y.Z" pin
# in <site-packages>/torch-*.dist-info/METADATA (PyPI's wheels pin the NCCL they were built with;
# a LibTorch zip or a source build has no such file: give the version then).
# A major.minor mismatch is a FATAL_ERROR (ProcessGroupNCCL::Options embeds ncclConfig_t, whose
# layout changes between NCCL releases); a patch difference and a missing reference are STATUS
# lines.
#
# Sets in the caller's scope:
#   <prefix>_FOUND, <prefix>_INCLUDE_DIR, <prefix>_LIBRARY, <prefix>_VERSION (X.Y.Z),
#   <prefix>_VERSION_CODE (NCCL_VERSION_CODE), <prefix>_SOURCE (which of the places above:
#   "NCCL_ROOT", "ENV{NCCL_ROOT}", "NCCL_INCLUDE_DIR/NCCL_LIB_DIR", "ENV{NCCL_HOME}", "pip wheel",
#   "conda", "CUDA toolkit", "system"), <prefix>_PREFIX (the folder it was found under),
#   <prefix>_TORCH_VERSION and <prefix>_TORCH_VERSION_SOURCE (the reference, "" when unknown),
#   <prefix>_SEARCHED (one "source: folder (what was missing)" entry per place looked at).
include_guard(GLOBAL)

# Reads NCCL_MAJOR/MINOR/PATCH (and NCCL_VERSION_CODE) from an nccl.h. Empty when it has none.
function(thinkingvit_nccl_header_version header out_version out_code)
  set(${out_version} "" PARENT_SCOPE)
  set(${out_code} "" PARENT_SCOPE)
  file(STRINGS "${header}" _lines REGEX "^[ \t]*#[ \t]*define[ \t]+NCCL_(MAJOR|MINOR|PATCH|VERSION_CODE)[ \t]")
  foreach(_key MAJOR MINOR PATCH VERSION_CODE)
    set(_${_key} "")
    foreach(_line IN LISTS _lines)
      if(_line MATCHES "define[ \t]+NCCL_${_key}[ \t]+([0-9]+)")
        set(_${_key} "${CMAKE_MATCH_1}")
      endif()
    endforeach()
  endforeach()
  if(_MAJOR STREQUAL "" OR _MINOR STREQUAL "" OR _PATCH STREQUAL "")
    return()
  endif()
  if(_VERSION_CODE STREQUAL "")  # nccl.h's NCCL_VERSION(X, Y, Z)
    if(_MAJOR LESS_EQUAL 2 AND _MINOR LESS_EQUAL 8)
      math(EXPR _VERSION_CODE "${_MAJOR} * 1000 + ${_MINOR} * 100 + ${_PATCH}")
    else()
      math(EXPR _VERSION_CODE "${_MAJOR} * 10000 + ${_MINOR} * 100 + ${_PATCH}")
    endif()
  endif()
  set(${out_version} "${_MAJOR}.${_MINOR}.${_PATCH}" PARENT_SCOPE)
  set(${out_code} "${_VERSION_CODE}" PARENT_SCOPE)
endfunction()

# The NCCL version torch's wheel pins (the NCCL it was built with), from its dist-info METADATA.
function(thinkingvit_torch_nccl_pin site_packages out_version out_source)
  set(${out_version} "" PARENT_SCOPE)
  set(${out_source} "" PARENT_SCOPE)
  if(NOT site_packages)
    return()
  endif()
  file(GLOB _metadata "${site_packages}/torch-*.dist-info/METADATA")
  foreach(_file IN LISTS _metadata)
    file(STRINGS "${_file}" _lines REGEX "^Requires-Dist: nvidia-nccl-cu[0-9]+ *==")
    foreach(_line IN LISTS _lines)
      if(_line MATCHES "^Requires-Dist: (nvidia-nccl-cu[0-9]+) *== *([0-9]+\\.[0-9]+(\\.[0-9]+)?)")
        set(${out_version} "${CMAKE_MATCH_2}" PARENT_SCOPE)
        set(${out_source} "${CMAKE_MATCH_1} pin in ${_file}" PARENT_SCOPE)
        return()
      endif()
    endforeach()
  endforeach()
endfunction()

# Looks for nccl.h in <includes> and libnccl in <libs>. Sets _tvit_hit_include/_library (both or
# neither) and appends "<label>: <where> (<what was missing>)" to _tvit_searched.
macro(_thinkingvit_nccl_probe label where includes libs)
  set(_tvit_hit_include "")
  set(_tvit_hit_library "")
  set(_tvit_hit_version "")
  set(_tvit_hit_code "")
  set(_tvit_probe_header "")
  foreach(_dir IN ITEMS ${includes})
    if(EXISTS "${_dir}/nccl.h" AND NOT IS_DIRECTORY "${_dir}/nccl.h")
      set(_tvit_probe_header "${_dir}")
      break()
    endif()
  endforeach()
  set(_tvit_probe_lib "")
  foreach(_dir IN ITEMS ${libs})
    foreach(_name IN ITEMS libnccl.so.2 libnccl.so)
      if(EXISTS "${_dir}/${_name}" AND NOT IS_DIRECTORY "${_dir}/${_name}")
        set(_tvit_probe_lib "${_dir}/${_name}")
        break()
      endif()
    endforeach()
    if(_tvit_probe_lib)
      break()
    endif()
  endforeach()
  if(NOT _tvit_probe_header)
    list(APPEND _tvit_searched "${label}: ${where} (no nccl.h)")
  elseif(NOT _tvit_probe_lib)
    list(APPEND _tvit_searched "${label}: ${where} (nccl.h in ${_tvit_probe_header}, but no libnccl.so.2)")
  else()
    thinkingvit_nccl_header_version("${_tvit_probe_header}/nccl.h" _tvit_hit_version _tvit_hit_code)
    if(NOT _tvit_hit_version)
      list(APPEND _tvit_searched "${label}: ${where} (${_tvit_probe_header}/nccl.h defines no NCCL_MAJOR/MINOR/PATCH)")
    else()
      list(APPEND _tvit_searched "${label}: ${where} (found NCCL ${_tvit_hit_version})")
      set(_tvit_hit_include "${_tvit_probe_header}")
      set(_tvit_hit_library "${_tvit_probe_lib}")
    endif()
  endif()
endmacro()

# The header and library folders under an install prefix.
macro(_thinkingvit_nccl_prefix_dirs prefix)
  set(_tvit_inc "${prefix}/include")
  set(_tvit_lib "${prefix}/lib" "${prefix}/lib64")
  if(_tvit_multiarch)
    list(APPEND _tvit_lib "${prefix}/lib/${_tvit_multiarch}")
  endif()
  if(_tvit_target_dir)
    list(APPEND _tvit_inc "${prefix}/targets/${_tvit_target_dir}/include")
    list(APPEND _tvit_lib "${prefix}/targets/${_tvit_target_dir}/lib")
  endif()
endmacro()

# Appends one install prefix to the candidates (skipped when empty, or a folder already listed
# under another name, e.g. /usr/local/cuda and /usr/local/cuda-13.0).
macro(_thinkingvit_nccl_add_prefix label dir explicit)
  set(_tvit_dir "${dir}")
  if(NOT _tvit_dir STREQUAL "")
    get_filename_component(_tvit_real "${_tvit_dir}" REALPATH)
    if(${explicit} OR NOT _tvit_real IN_LIST _tvit_seen)
      list(APPEND _tvit_seen "${_tvit_real}")
      math(EXPR _tvit_n "${_tvit_n} + 1")
      set(_tvit_${_tvit_n}_label "${label}")
      set(_tvit_${_tvit_n}_where "${_tvit_dir}")
      set(_tvit_${_tvit_n}_absent FALSE)
      if(NOT IS_DIRECTORY "${_tvit_dir}")
        set(_tvit_${_tvit_n}_absent TRUE)
      endif()
      _thinkingvit_nccl_prefix_dirs("${_tvit_dir}")
      set(_tvit_${_tvit_n}_inc "${_tvit_inc}")
      set(_tvit_${_tvit_n}_lib "${_tvit_lib}")
      set(_tvit_${_tvit_n}_explicit ${explicit})
    endif()
  endif()
endmacro()

function(thinkingvit_find_nccl prefix)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "REQUIRED;QUIET" "TORCH_SITE_PACKAGES;REQUIRED_VERSION"
                        "CUDA_PREFIXES;SYSTEM_PREFIXES")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "thinkingvit_find_nccl: unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()

  # Folder names: Debian's multiarch triplet and the CUDA toolkit's targets/<arch>.
  set(_processor "${CMAKE_SYSTEM_PROCESSOR}")
  if(NOT _processor)
    set(_processor "${CMAKE_HOST_SYSTEM_PROCESSOR}")
  endif()
  set(_tvit_multiarch "${CMAKE_LIBRARY_ARCHITECTURE}")
  if(NOT _tvit_multiarch AND _processor)
    set(_tvit_multiarch "${_processor}-linux-gnu")
  endif()
  set(_tvit_target_dir "")
  if(_processor MATCHES "^(x86_64|AMD64|amd64)$")
    set(_tvit_target_dir "x86_64-linux")
  elseif(_processor MATCHES "^(aarch64|arm64)$")
    set(_tvit_target_dir "sbsa-linux")
  elseif(_processor)
    set(_tvit_target_dir "${_processor}-linux")
  endif()

  # The reference version: what LibTorch was built with.
  set(_ref "${ARG_REQUIRED_VERSION}")
  set(_ref_source "REQUIRED_VERSION")
  if(NOT _ref AND THINKINGVIT_TORCH_NCCL_VERSION)
    set(_ref "${THINKINGVIT_TORCH_NCCL_VERSION}")
    set(_ref_source "THINKINGVIT_TORCH_NCCL_VERSION")
  endif()
  if(NOT _ref)
    thinkingvit_torch_nccl_pin("${ARG_TORCH_SITE_PACKAGES}" _ref _ref_source)
  endif()
  if(_ref AND NOT _ref MATCHES "^[0-9]+\\.[0-9]+(\\.[0-9]+)?$")
    message(FATAL_ERROR "thinkingvit_find_nccl: reference NCCL version '${_ref}' (${_ref_source}) "
                        "is not <major>.<minor>[.<patch>]")
  endif()
  if(NOT _ref)
    set(_ref_source "")
  endif()

  # The places, in order: _tvit_n candidates, each a label, a folder to name, the header and
  # library folders, and whether it was named explicitly (then it must hold NCCL).
  set(_tvit_n 0)
  set(_tvit_seen "")

  # 1-3: places named explicitly.
  _thinkingvit_nccl_add_prefix("NCCL_ROOT" "${NCCL_ROOT}" TRUE)
  _thinkingvit_nccl_add_prefix("ENV{NCCL_ROOT}" "$ENV{NCCL_ROOT}" TRUE)
  set(_inc_dir "${NCCL_INCLUDE_DIR}")
  if(NOT _inc_dir)
    set(_inc_dir "$ENV{NCCL_INCLUDE_DIR}")
  endif()
  set(_lib_dir "${NCCL_LIB_DIR}")
  if(NOT _lib_dir)
    set(_lib_dir "$ENV{NCCL_LIB_DIR}")
  endif()
  if(_inc_dir OR _lib_dir)
    math(EXPR _tvit_n "${_tvit_n} + 1")
    set(_tvit_${_tvit_n}_label "NCCL_INCLUDE_DIR/NCCL_LIB_DIR")
    set(_tvit_${_tvit_n}_where "${_inc_dir} and ${_lib_dir}")
    set(_tvit_${_tvit_n}_inc "${_inc_dir}")
    set(_tvit_${_tvit_n}_lib "${_lib_dir}")
    set(_tvit_${_tvit_n}_explicit TRUE)
    set(_tvit_${_tvit_n}_absent FALSE)
  endif()
  _thinkingvit_nccl_add_prefix("ENV{NCCL_HOME}" "$ENV{NCCL_HOME}" TRUE)

  # 4. the pip wheel: nvidia-nccl-cu<N> installs into nvidia/nccl; nvidia/cu<N> is where the CUDA
  # 13 wheels put the rest of the toolkit.
  if(ARG_TORCH_SITE_PACKAGES)
    _thinkingvit_nccl_add_prefix("pip wheel" "${ARG_TORCH_SITE_PACKAGES}/nvidia/nccl" FALSE)
    file(GLOB _cu_dirs LIST_DIRECTORIES true "${ARG_TORCH_SITE_PACKAGES}/nvidia/cu[0-9]*")
    list(SORT _cu_dirs COMPARE NATURAL ORDER DESCENDING)
    foreach(_dir IN LISTS _cu_dirs)
      _thinkingvit_nccl_add_prefix("pip wheel" "${_dir}" FALSE)
    endforeach()
  endif()

  # 5. conda.
  _thinkingvit_nccl_add_prefix("conda" "$ENV{CONDA_PREFIX}" FALSE)

  # 6. the CUDA toolkit's own copy.
  if(ARG_CUDA_PREFIXES)
    set(_cuda_prefixes "${ARG_CUDA_PREFIXES}")
  elseif(DEFINED THINKINGVIT_NCCL_CUDA_PREFIXES)
    set(_cuda_prefixes "${THINKINGVIT_NCCL_CUDA_PREFIXES}")
  else()
    set(_cuda_prefixes "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}")
    foreach(_dir IN LISTS CUDAToolkit_INCLUDE_DIRS)
      get_filename_component(_dir "${_dir}" DIRECTORY)
      list(APPEND _cuda_prefixes "${_dir}")
    endforeach()
    list(APPEND _cuda_prefixes "${CUDAToolkit_LIBRARY_ROOT}")
    if(CMAKE_CUDA_COMPILER)
      get_filename_component(_dir "${CMAKE_CUDA_COMPILER}" REALPATH)
      get_filename_component(_dir "${_dir}" DIRECTORY)
      get_filename_component(_dir "${_dir}" DIRECTORY)
      list(APPEND _cuda_prefixes "${_dir}")
    endif()
    file(GLOB _versioned LIST_DIRECTORIES true "/usr/local/cuda-*")
    list(SORT _versioned COMPARE NATURAL ORDER DESCENDING)
    list(APPEND _cuda_prefixes "/usr/local/cuda" ${_versioned})
  endif()
  foreach(_dir IN LISTS _cuda_prefixes)
    _thinkingvit_nccl_add_prefix("CUDA toolkit" "${_dir}" FALSE)
  endforeach()

  # 7. the system.
  if(ARG_SYSTEM_PREFIXES)
    set(_system_prefixes "${ARG_SYSTEM_PREFIXES}")
  elseif(DEFINED THINKINGVIT_NCCL_SYSTEM_PREFIXES)
    set(_system_prefixes "${THINKINGVIT_NCCL_SYSTEM_PREFIXES}")
  else()
    set(_system_prefixes /usr /usr/local)
  endif()
  foreach(_dir IN LISTS _system_prefixes)
    _thinkingvit_nccl_add_prefix("system" "${_dir}" FALSE)
  endforeach()

  set(_tvit_searched "")
  set(_found_source "")
  set(_found_prefix "")
  if(_tvit_n GREATER 0)
    foreach(_i RANGE 1 ${_tvit_n})
      set(_label "${_tvit_${_i}_label}")
      if(_tvit_${_i}_absent)
        set(_tvit_hit_include "")
        list(APPEND _tvit_searched "${_label}: ${_tvit_${_i}_where} (no such folder)")
      else()
        _thinkingvit_nccl_probe("${_label}" "${_tvit_${_i}_where}" "${_tvit_${_i}_inc}" "${_tvit_${_i}_lib}")
      endif()
      if(_tvit_hit_include)
        set(_found_source "${_label}")
        set(_found_prefix "${_tvit_${_i}_where}")
        break()
      endif()
      if(_tvit_${_i}_explicit)
        list(GET _tvit_searched -1 _why)
        message(FATAL_ERROR "thinkingvit: ${_label} names no usable NCCL: ${_why}. It must hold "
                            "include/nccl.h and lib/libnccl.so.2 (or lib64/); fix or unset it, or "
                            "configure with -DTHINKINGVIT_NCCL=OFF to build without NCCL.")
      endif()
    endforeach()
  endif()

  if(_found_source)
    set(_found_include "${_tvit_hit_include}")
    set(_found_library "${_tvit_hit_library}")
    set(_found_version "${_tvit_hit_version}")
    set(_found_code "${_tvit_hit_code}")
  endif()

  set(${prefix}_SEARCHED "${_tvit_searched}" PARENT_SCOPE)
  set(${prefix}_TORCH_VERSION "${_ref}" PARENT_SCOPE)
  set(${prefix}_TORCH_VERSION_SOURCE "${_ref_source}" PARENT_SCOPE)
  string(REPLACE ";" "\n    " _searched_text "${_tvit_searched}")
  if(NOT _searched_text)
    set(_searched_text "(nothing: no TORCH_SITE_PACKAGES, CONDA_PREFIX, toolkit or system prefix)")
  endif()

  if(NOT _found_source)
    set(${prefix}_FOUND FALSE PARENT_SCOPE)
    foreach(_var INCLUDE_DIR LIBRARY VERSION VERSION_CODE SOURCE PREFIX)
      set(${prefix}_${_var} "" PARENT_SCOPE)
    endforeach()
    set(_want "NCCL")
    set(_wheel_hint "")
    if(_ref)
      set(_want "NCCL ${_ref} (the NCCL LibTorch was built with: ${_ref_source})")
      if(_ref_source MATCHES "^(nvidia-nccl-cu[0-9]+) pin")
        set(_wheel_hint " (e.g. `pip install ${CMAKE_MATCH_1}==${_ref}` into torch's environment)")
      endif()
    endif()
    if(ARG_REQUIRED)
      message(FATAL_ERROR "thinkingvit: a CUDA build needs ${_want}, and no NCCL was found. "
        "Searched, in this order:\n    ${_searched_text}\n"
        "Point at an NCCL install with -DNCCL_ROOT=<prefix> (or the NCCL_ROOT environment "
        "variable), a folder holding include/nccl.h and lib/libnccl.so.2${_wheel_hint}; or "
        "configure with -DTHINKINGVIT_NCCL=OFF to build the CUDA binary without the NCCL process "
        "group (multi-GPU training then runs over Gloo).")
    elseif(NOT ARG_QUIET)
      message(STATUS "thinkingvit: NCCL not found; searched:\n    ${_searched_text}")
    endif()
    return()
  endif()

  # Against LibTorch's NCCL.
  set(_check "")
  if(_ref)
    string(REGEX MATCH "^[0-9]+\\.[0-9]+" _ref_mm "${_ref}")
    string(REGEX MATCH "^[0-9]+\\.[0-9]+" _found_mm "${_found_version}")
    if(NOT _ref_mm VERSION_EQUAL _found_mm)
      message(FATAL_ERROR "thinkingvit: NCCL ${_found_version} was found (${_found_source}: "
        "${_found_include}/nccl.h, ${_found_library}), but LibTorch was built with NCCL ${_ref} "
        "(${_ref_source}). ProcessGroupNCCL's Options embed NCCL's ncclConfig_t, whose layout "
        "changes between NCCL releases, so the headers must be NCCL ${_ref_mm}. Point "
        "-DNCCL_ROOT=<prefix> at NCCL ${_ref_mm}, set THINKINGVIT_TORCH_NCCL_VERSION if the "
        "reference is wrong, or configure with -DTHINKINGVIT_NCCL=OFF.")
    endif()
    if(_ref MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+$" AND NOT _ref VERSION_EQUAL _found_version)
      set(_check ", LibTorch's is ${_ref} (${_ref_source}): patch releases differ, same layout")
    else()
      set(_check ", matches LibTorch's (${_ref_source})")
    endif()
  else()
    set(_check ", not checked against LibTorch's")
    if(NOT ARG_QUIET)
      message(STATUS "thinkingvit: no reference version for LibTorch's NCCL (no nvidia-nccl-cu<N> "
                     "pin in a torch-*.dist-info/METADATA under '${ARG_TORCH_SITE_PACKAGES}'); set "
                     "THINKINGVIT_TORCH_NCCL_VERSION to the NCCL LibTorch was built with to check it")
    endif()
  endif()

  set(${prefix}_FOUND TRUE PARENT_SCOPE)
  set(${prefix}_INCLUDE_DIR "${_found_include}" PARENT_SCOPE)
  set(${prefix}_LIBRARY "${_found_library}" PARENT_SCOPE)
  set(${prefix}_VERSION "${_found_version}" PARENT_SCOPE)
  set(${prefix}_VERSION_CODE "${_found_code}" PARENT_SCOPE)
  set(${prefix}_SOURCE "${_found_source}" PARENT_SCOPE)
  set(${prefix}_PREFIX "${_found_prefix}" PARENT_SCOPE)
  if(NOT ARG_QUIET)
    message(STATUS "thinkingvit: NCCL ${_found_version} (NCCL_VERSION_CODE ${_found_code}) from "
                   "${_found_source}: ${_found_include}/nccl.h, ${_found_library}${_check}")
  endif()
endfunction()
