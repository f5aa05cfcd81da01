// Name parsing and the exported function table, both from hoderiv/functions.def.
#include "ops/functions.h"

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <sstream>

namespace hoderiv {
namespace {

struct FunctionEntry {
  const char* name;
  math::Function function;
  int num_params;
  const char* param_names;  // comma-separated
};

constexpr FunctionEntry kFunctions[] = {
#define HODERIV_FUNCTION(ENUM, NAME, NUM_PARAMS, PARAM_NAMES) {NAME, math::Function::ENUM, NUM_PARAMS, PARAM_NAMES},
#include "hoderiv/functions.def"
};
static_assert(sizeof(kFunctions) / sizeof(kFunctions[0]) == math::kNumFunctions, "one entry per function");

// Names in a comma-separated list ("" has none).
constexpr int count_names(const char* list) {
  if (*list == '\0') return 0;
  int count = 1;
  for (; *list != '\0'; ++list) count += *list == ',' ? 1 : 0;
  return count;
}

constexpr bool table_is_consistent() {
  for (int f = 0; f < math::kNumFunctions; ++f) {
    const FunctionEntry& entry = kFunctions[f];
    if (static_cast<int>(entry.function) != f) return false;  // enum order == table order
    if (entry.num_params < 0 || entry.num_params > math::kMaxParams) return false;
    if (count_names(entry.param_names) != entry.num_params) return false;
  }
  return true;
}
static_assert(table_is_consistent(),
              "functions.def: each entry's parameter count must match its names and be <= kMaxParams");

std::vector<std::string> split_names(const char* list) {
  std::vector<std::string> names;
  std::string current;
  for (const char* c = list; *c != '\0'; ++c) {
    if (*c == ',') {
      names.push_back(current);
      current.clear();
    } else if (*c != ' ') {
      current += *c;
    }
  }
  if (!current.empty()) names.push_back(current);
  return names;
}

// Checks of parameter values beyond their count.
void check_params(const char* op, const FunctionEntry& entry, c10::ArrayRef<double> params) {
  if (entry.function == math::Function::kSoftplus) {
    TORCH_CHECK(std::isfinite(params[0]) && params[0] != 0.0, op, ": softplus parameter beta must be finite and non-zero, got ",
                params[0]);
  }
  if (entry.function == math::Function::kScaledSin) {
    TORCH_CHECK(std::isfinite(params[0]), op, ": scaled_sin parameter frequency must be finite, got ", params[0]);
  }
  if (entry.function == math::Function::kPow) {
    TORCH_CHECK(std::isfinite(params[0]), op, ": pow parameter exponent must be finite, got ", params[0]);
  }
}

}  // namespace

std::string supported_function_names() {
  std::ostringstream out;
  for (int f = 0; f < math::kNumFunctions; ++f) out << (f ? ", " : "") << kFunctions[f].name;
  return out.str();
}

ParsedFunction parse_function(const char* op, std::string_view name, c10::ArrayRef<double> params) {
  for (const FunctionEntry& entry : kFunctions) {
    if (name != entry.name) continue;
    TORCH_CHECK(static_cast<int64_t>(params.size()) == entry.num_params, op, ": function '", entry.name, "' takes ",
                entry.num_params, " parameter(s)", entry.num_params ? " (" : "", entry.param_names,
                entry.num_params ? ")" : "", ", got params of length ", params.size());
    check_params(op, entry, params);
    ParsedFunction parsed;
    parsed.function = entry.function;
    if (entry.num_params >= 1) parsed.params.p0 = params[0];
    if (entry.num_params >= 2) parsed.params.p1 = params[1];
    return parsed;
  }
  TORCH_CHECK(false, op, ": unknown function '", std::string(name), "'; the kernels serve: ",
              supported_function_names());
}

std::vector<FunctionInfo> function_table() {
  std::vector<FunctionInfo> table;
  for (const FunctionEntry& entry : kFunctions) {
    table.push_back({entry.name, entry.num_params, split_names(entry.param_names)});
  }
  return table;
}

}  // namespace hoderiv
