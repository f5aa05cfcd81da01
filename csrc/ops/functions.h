// The elementwise functions by name: parsing a (name, params) pair of an op
// call into the kernels' enum, and the table as data for the Python module.
// Both expand hoderiv/functions.def.
#pragma once

#include <c10/util/ArrayRef.h>

#include <string>
#include <string_view>
#include <vector>

#include "hoderiv/derivative_math.h"

namespace hoderiv {

struct ParsedFunction {
  math::Function function = math::Function::kIdentity;
  math::FunctionParams params{};
};

// Maps a function name ("tanh", "softplus", ...) and its scalar parameters to
// the kernels' enum, checking the parameter count and values; `op` names the
// calling op in messages.
ParsedFunction parse_function(const char* op, std::string_view name, c10::ArrayRef<double> params);

// Comma-separated list of the names parse_function accepts (for messages).
std::string supported_function_names();

// One entry of functions.def, for _C.function_table().
struct FunctionInfo {
  std::string name;
  int num_params;
  std::vector<std::string> param_names;
};

// The table, in table order.
std::vector<FunctionInfo> function_table();

}  // namespace hoderiv
