// The qaft version recorded in the registry's lineage (jobs and models): CMake's PROJECT_VERSION,
// compiled into qaft_registry as QAFT_VERSION ("0.1.0" when the build does not define it).
#pragma once

#include <string_view>

namespace qaft {

std::string_view qaft_version();

}  // namespace qaft
