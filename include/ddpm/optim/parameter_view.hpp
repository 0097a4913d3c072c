// SPDX-License-Identifier: MIT
// Helpers shared by the optimizers: walking a list of ParameterBlocks as one flat vector, and
// chunked parallel loops over flat buffers.
#pragma once

#include <algorithm>
#include <cstddef>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "ddpm/core/error.hpp"
#include "ddpm/core/parallel.hpp"
#include "ddpm/core/parameters.hpp"
#include "ddpm/core/types.hpp"

namespace ddpm::optim {
namespace detail {

template <class T>
struct BlockTraits {
  static constexpr bool is_block = false;
};
template <class Real>
struct BlockTraits<ParameterBlock<Real>> {
  static constexpr bool is_block = true;
  using RealType = Real;
};

}  // namespace detail

/// A range of ParameterBlock<Real> (a model's parameters(), a std::vector or span of blocks).
template <class R>
concept ParameterBlockRange = std::ranges::forward_range<R> &&
    detail::BlockTraits<std::remove_cvref_t<std::ranges::range_value_t<R>>>::is_block;

/// The Real of a ParameterBlockRange.
template <ParameterBlockRange R>
using BlockReal =
    typename detail::BlockTraits<std::remove_cvref_t<std::ranges::range_value_t<R>>>::RealType;

namespace detail {

/// Elements per chunk of the parallel element-wise loops: small enough that the four or five
/// arrays an update touches stay in L2, large enough to amortize the loop overhead.
inline constexpr Index kChunk = 4096;

/// Runs body(begin, end) over [0, n) in chunks of kChunk, in parallel.
template <class Body>
void for_each_chunk(Index n, Body&& body) {
  const Index chunks = (n + kChunk - 1) / kChunk;
  ddpm::detail::parallel_for(chunks, [&](Index c) {
    const Index begin = c * kChunk;
    body(begin, std::min(n, begin + kChunk));
  });
}

/// Checks every block has as many gradients as values; returns the total element count.
template <class Blocks>
Index checked_total_size(const Blocks& blocks) {
  Index total = 0;
  for (const auto& block : blocks) {
    if (block.value.size() != block.grad.size()) {
      throw InvalidArgument("gradient size of block " + block.name,
                            ddpm::detail::to_text(block.grad.size()),
                            "the block's value size, " + ddpm::detail::to_text(block.value.size()));
    }
    total += static_cast<Index>(block.value.size());
  }
  return total;
}

/// True when the blocks' values are back to back in memory, and so are their gradients (as in a
/// model that owns one buffer), so they can be processed as one flat span.
template <class Blocks>
bool is_contiguous(const Blocks& blocks) {
  const auto* value_end = static_cast<const void*>(nullptr);
  const auto* grad_end = static_cast<const void*>(nullptr);
  bool first = true;
  for (const auto& block : blocks) {
    if (!first && (static_cast<const void*>(block.value.data()) != value_end ||
                   static_cast<const void*>(block.grad.data()) != grad_end)) {
      return false;
    }
    first = false;
    value_end = block.value.data() + block.value.size();
    grad_end = block.grad.data() + block.grad.size();
  }
  return true;
}

/// Calls body(offset, values, grads) once for the whole range when it is contiguous, else once
/// per block, with offset = the block's position in the flat vector.
template <class Blocks, class Body>
void for_each_span(const Blocks& blocks, Body&& body) {
  if (is_contiguous(blocks)) {
    auto first = std::ranges::begin(blocks);
    if (first == std::ranges::end(blocks)) return;
    const Index total = checked_total_size(blocks);
    using Real = std::remove_reference_t<decltype(first->value[0])>;
    body(Index{0}, std::span<Real>(first->value.data(), static_cast<std::size_t>(total)),
         std::span<Real>(first->grad.data(), static_cast<std::size_t>(total)));
    return;
  }
  Index offset = 0;
  for (const auto& block : blocks) {
    body(offset, block.value, block.grad);
    offset += static_cast<Index>(block.value.size());
  }
}

}  // namespace detail
}  // namespace ddpm::optim
