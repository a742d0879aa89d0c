// The replicas' gradient buckets and ring slices (ranks/grad_sync.h) as numbers, written once:
// the runtime cuts its buckets with these, and the planner (planner/planner.cpp) models the
// synchronisation of exactly those buckets. Torch-free and MPI-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace arceus {

// Bucket size cap (DDP's is 25 MB; small here so that a few buckets overlap even the backward
// of a small model's last layers): 4 MiB of float32.
constexpr int64_t kSyncBucketFloats = int64_t{1} << 20;
// The ring's slices are [rows, kSyncRow]: one codec scale per kSyncRow values at 8 and 4 bits.
constexpr int64_t kSyncRow = 512;

// The bucket of each parameter tensor, given their sizes (floats) in the order the backward
// finishes them (reverse model order): a bucket takes tensors until the next one would take it
// past kSyncBucketFloats (a larger tensor is a bucket of its own). Buckets numbered from 0.
std::vector<size_t> sync_bucket_of(const std::vector<int64_t>& tensor_floats);

// A bucket's floats as the ring of `replicas` members carries them (16/8/4 bits): padded to a
// multiple of replicas * kSyncRow, so that each member's slice is whole codec rows.
int64_t sync_padded_floats(int64_t floats, int64_t replicas);

}  // namespace arceus
