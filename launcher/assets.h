// Files compiled into the binary (cmake/embed_assets.cmake): the dashboard's page, style and
// script (launcher/dashboard/), served by `arceus serve` and inlined by `arceus report`, and
// the shipped configs (configs/*.yaml), the dashboard's job presets.
#pragma once

#include <string_view>
#include <vector>

namespace arceus {

struct Asset {
  std::string_view name;          // its path in the repository: "launcher/dashboard/app.js", "configs/gpt_char.yaml"
  std::string_view content_type;  // from the extension
  std::string_view data;
};

const std::vector<Asset>& assets();

// The asset of that name, or nullptr.
inline const Asset* find_asset(std::string_view name) {
  for (const Asset& a : assets())
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace arceus
