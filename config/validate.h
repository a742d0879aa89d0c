// The checks that span several keys (config/validate.cpp). Internal to config/: parse_config
// calls them in this order.
#pragma once

#include "config/config.h"
#include "config/fields.h"

namespace arceus::config_reader {

class Document;

// Whether `key` applies to `c` (its Scope against the model's type and the dataset's name).
bool applies(const Key& key, const Config& c);

// After model_config.type is read: a key of the other model type is an error, named before
// its value is checked (the fix is removing it).
void check_model_scope(Document& doc, const Config& c);
// After dataset_config.name is read: the name must suit the model's type, and a key of another
// dataset is an error.
void check_dataset_scope(Document& doc, const Config& c);
// After every key is read: shapes that must agree, and the operator's limits on sizes.
void validate(Document& doc, const Config& c);

}  // namespace arceus::config_reader
