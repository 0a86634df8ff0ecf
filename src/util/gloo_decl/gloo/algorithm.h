#pragma once
// See gloo/context.h: declarations for c10d/ProcessGroupGloo.hpp only.
#include "gloo/context.h"
