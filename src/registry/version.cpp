#include "registry/version.h"

#ifndef QAFT_VERSION
#define QAFT_VERSION "0.1.0"
#endif

namespace qaft {

std::string_view qaft_version() { return QAFT_VERSION; }

}  // namespace qaft
