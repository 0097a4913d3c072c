// SPDX-License-Identifier: MIT
// A network of image layers (convolutions, ResBlocks, attention, norms, concatenations,
// upsampling) run in the order it was built, with hand-written backprop through every skip.
// The UNet and the noisy-image classifier are both built from it.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ddpm/core/error.hpp"
#include "ddpm/core/rng.hpp"
#include "ddpm/core/types.hpp"
#include "ddpm/nn/activation.hpp"
#include "ddpm/nn/attention.hpp"
#include "ddpm/nn/conv2d.hpp"
#include "ddpm/nn/group_norm.hpp"
#include "ddpm/nn/image.hpp"
#include "ddpm/nn/parameter_store.hpp"
#include "ddpm/nn/resblock.hpp"
#include "ddpm/nn/upsample.hpp"
#include "ddpm/nn/workspace.hpp"

namespace ddpm::nn {

namespace detail {

/// The checks shared by the networks built as levels of a ConvGraph (UNet, Classifier): each
/// throws InvalidArgument naming the config field.
inline void validate_levels(Index image_channels, Index height, Index width, Index base_channels,
                            const std::vector<Index>& channel_mult, Index res_blocks, Index groups,
                            double dropout) {
  ddpm::detail::require(image_channels >= 1, "image_channels", image_channels, ">= 1");
  ddpm::detail::require(base_channels >= 1, "base_channels", base_channels, ">= 1");
  ddpm::detail::require(!channel_mult.empty(), "channel_mult", "{}", "at least one level");
  for (const Index mult : channel_mult) {
    ddpm::detail::require(mult >= 1, "channel_mult", mult, "entries >= 1");
  }
  ddpm::detail::require(res_blocks >= 1, "res_blocks", res_blocks, ">= 1");
  const Index factor = Index{1} << (channel_mult.size() - 1);
  const std::string divisible =
      "a positive multiple of 2^(levels - 1) = " + ddpm::detail::to_text(factor);
  ddpm::detail::require(height >= 1 && height % factor == 0, "height", height, divisible);
  ddpm::detail::require(width >= 1 && width % factor == 0, "width", width, divisible);
  ddpm::detail::require(groups >= 1 && base_channels % groups == 0, "groups", groups, [&] {
    return "a divisor of base_channels = " + ddpm::detail::to_text(base_channels) +
           " (and so of every level's channels)";
  });
  ddpm::detail::require(dropout >= 0.0 && dropout < 1.0, "dropout", dropout, "[0, 1)");
}

}  // namespace detail

/// A directed acyclic graph of image layers, built op by op: each builder call adds a layer that
/// reads earlier nodes and returns its output node. Node 0 is the input (channels-last).
/// forward() runs the ops in order; backward() runs them in reverse, accumulating every node's
/// gradient, so a node read by several ops (a UNet skip) receives the sum of their gradients.
/// ResBlocks read a shared embedding (batch x embedding_dim) and add to its gradient.
/// \code
///   ConvGraph<float> g;
///   auto x = g.input(28, 28, 1);
///   auto h = g.conv(store, "conv_in", x, 32, 3, 1);
///   h = g.block(store, "block0", h, 32, 128, 8, 0.0, EmbeddingInjection::add);
/// \endcode
template <class Real>
class ConvGraph {
 public:
  /// The index of a node (its position in the graph).
  using NodeId = std::size_t;

  /// The input node: images of height x width x channels.
  NodeId input(Index height, Index width, Index channels) {
    nodes_.clear();
    ops_.clear();
    return add_node({0, height, width, channels});
  }

  /// A convolution (see Conv2d); `zero_init` starts it at zero.
  NodeId conv(ParameterStore<Real>& store, const std::string& name, NodeId in, Index out_channels,
              Index kernel, Index stride, bool zero_init = false) {
    const ImageShape& from = nodes_[in].shape;
    convs_.emplace_back(store, name, from.channels, out_channels, kernel, stride);
    conv_zero_.push_back(zero_init);
    const ImageShape out = convs_.back().output_shape({1, from.height, from.width, from.channels});
    return add_op(Kind::conv, convs_.size() - 1, in, out.with_channels(out_channels));
  }

  /// A ResBlock to out_channels reading the shared embedding; `zero_init` starts its last conv at
  /// zero.
  NodeId block(ParameterStore<Real>& store, const std::string& name, NodeId in, Index out_channels,
               Index embedding_dim, Index groups, double dropout, EmbeddingInjection injection,
               bool zero_init = false) {
    const ImageShape& from = nodes_[in].shape;
    blocks_.emplace_back(store, name, from.channels, out_channels, embedding_dim, groups, dropout,
                         injection);
    block_zero_.push_back(zero_init);
    return add_op(Kind::block, blocks_.size() - 1, in, from.with_channels(out_channels));
  }

  /// Self-attention with a residual add; `zero_init` starts its projection at zero.
  NodeId attention(ParameterStore<Real>& store, const std::string& name, NodeId in, Index heads,
                   Index groups, bool zero_init = false) {
    const ImageShape& from = nodes_[in].shape;
    attentions_.emplace_back(store, name, from.channels, heads, groups);
    attention_zero_.push_back(zero_init);
    return add_op(Kind::attention, attentions_.size() - 1, in, from);
  }

  /// GroupNorm followed by `activation`.
  NodeId norm(ParameterStore<Real>& store, const std::string& name, NodeId in, Index groups,
              Activation activation) {
    const ImageShape& from = nodes_[in].shape;
    norms_.emplace_back(store, name, groups, from.channels, activation);
    return add_op(Kind::norm, norms_.size() - 1, in, from);
  }

  /// [a, b] along channels (a's channels first, as torch.cat([h, skip], dim=1)).
  NodeId concat(NodeId a, NodeId b) {
    const ImageShape& from = nodes_[a].shape;
    return add_op(Kind::concat, 0, a, from.with_channels(from.channels + nodes_[b].shape.channels),
                  b);
  }

  /// Nearest-neighbour x2 upsampling.
  NodeId upsample(NodeId in) {
    const ImageShape& from = nodes_[in].shape;
    return add_op(Kind::upsample, 0, in, {0, 2 * from.height, 2 * from.width, from.channels});
  }

  /// The shape of a node (batch = that of the last forward()).
  [[nodiscard]] const ImageShape& shape(NodeId node) const { return nodes_[node].shape; }
  /// The last node added.
  [[nodiscard]] NodeId last() const noexcept { return nodes_.size() - 1; }

  /// Points the layer at `store`'s buffers, after store.allocate() (and, for a copy, BoundLayers).
  void bind(ParameterStore<Real>& store) noexcept {
    for (Conv2d<Real>& conv : convs_) conv.bind(store);
    for (GroupNorm<Real>& norm : norms_) norm.bind(store);
    for (ResBlock<Real>& block : blocks_) block.bind(store);
    for (SpatialAttention<Real>& attention : attentions_) attention.bind(store);
  }

  /// Initializes every layer from `rng`, using layer ids from `layer` on (advanced past them).
  void initialize(const CounterRng& rng, std::uint32_t& layer) {
    for (std::size_t i = 0; i < convs_.size(); ++i)
      convs_[i].initialize(rng, layer++, conv_zero_[i]);
    for (GroupNorm<Real>& norm : norms_) norm.initialize();
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      blocks_[i].initialize(rng, layer, block_zero_[i]);
      layer += ResBlock<Real>::kLayerIds;
    }
    for (std::size_t i = 0; i < attentions_.size(); ++i) {
      attentions_[i].initialize(rng, layer, attention_zero_[i]);
      layer += 2;
    }
  }

  /// Runs every op on images given as planar rows (batch x C*H*W of the input node). With
  /// `dropout_on` the dropout masks are draws (block index, `draw`) of `rng`.
  void forward(Eigen::Ref<const Batch<Real>> planar, Eigen::Ref<const Batch<Real>> embedding,
               bool keep_for_backward, bool dropout_on, const CounterRng& rng, std::uint32_t draw) {
    const Index batch = planar.rows();
    for (Node& node : nodes_) node.shape.batch = batch;
    Node& input = nodes_[0];
    to_channels_last<Real>(planar, input.shape,
                           input.value.resize(input.shape.pixels(), input.shape.channels));
    for (const Op& op : ops_) {
      run_forward(op, embedding, keep_for_backward, dropout_on, rng, draw);
    }
  }

  /// The value of a node after forward().
  [[nodiscard]] Eigen::Map<Batch<Real>> value(NodeId node) { return nodes_[node].value.view(); }

  /// Starts a backward pass: every node's gradient is zero until something writes it. Nothing is
  /// zeroed here: the first op to reach a node's gradient overwrites it, later ones add to it.
  void begin_backward() {
    for (Node& node : nodes_) {
      node.grad.resize(node.shape.pixels(), node.shape.channels);
      node.grad_written = false;
    }
  }

  /// The gradient of a node (after begin_backward()), for the caller to write or add to.
  [[nodiscard]] Eigen::Map<Batch<Real>> grad(NodeId node) { return written_grad(nodes_[node]); }

  /// Back-propagates through every op, accumulating parameter gradients and adding d loss /
  /// d embedding to d_embedding. With `input_gradient` the input's gradient is computed too
  /// (input_gradient_planar()); without it the first convolution skips its input gradient.
  void backward(Eigen::Ref<const Batch<Real>> embedding, Eigen::Ref<Batch<Real>> d_embedding,
                bool input_gradient) {
    for (auto it = ops_.rbegin(); it != ops_.rend(); ++it) {
      run_backward(*it, embedding, d_embedding, input_gradient);
    }
  }

  /// d loss / d input as planar rows, after backward(..., true).
  void input_gradient_planar(Batch<Real>& out) const {
    const Node& input = nodes_[0];
    out.resize(input.shape.batch, input.shape.image_size());
    if (!input.grad_written) {
      out.setZero();
      return;
    }
    to_planar<Real>(input.grad.view(), input.shape, out);
  }

 private:
  enum class Kind { conv, norm, block, attention, concat, upsample };

  struct Op {
    Kind kind;
    std::size_t layer;  // index into convs_ / norms_ / blocks_ / attentions_
    NodeId in;
    NodeId out;
    NodeId in2;  // concat's second input
  };

  struct Node {
    ImageShape shape;
    Workspace<Real> value;
    Workspace<Real> grad;
    bool grad_written = false;  // in this backward pass; an unwritten gradient is zero
  };

  NodeId add_node(const ImageShape& shape) {
    nodes_.push_back(Node{shape, {}, {}});
    return nodes_.size() - 1;
  }

  /// The node's gradient, zeroed now if nothing wrote it yet.
  static Eigen::Map<Batch<Real>> written_grad(Node& node) {
    if (!node.grad_written) {
      node.grad.view().setZero();
      node.grad_written = true;
    }
    return node.grad.view();
  }

  /// Whether an op adding into `node`'s gradient must add (true) or may overwrite (false); marks
  /// the gradient written either way.
  static bool accumulate_into(Node& node) {
    const bool accumulate = node.grad_written;
    node.grad_written = true;
    return accumulate;
  }

  NodeId add_op(Kind kind, std::size_t layer, NodeId in, const ImageShape& shape, NodeId in2 = 0) {
    const NodeId out = add_node(shape);
    ops_.push_back(Op{kind, layer, in, out, in2});
    return out;
  }

  void run_forward(const Op& op, const Eigen::Ref<const Batch<Real>>& embedding, bool keep,
                   bool dropout_on, const CounterRng& rng, std::uint32_t draw) {
    Node& in = nodes_[op.in];
    Node& out = nodes_[op.out];
    Eigen::Map<Batch<Real>> y = out.value.resize(out.shape.pixels(), out.shape.channels);
    const Eigen::Map<const Batch<Real>> x = std::as_const(in.value).view();
    switch (op.kind) {
      case Kind::conv:
        convs_[op.layer].forward(x, in.shape, y);
        break;
      case Kind::norm:
        norms_[op.layer].forward(x, in.shape, y, keep);
        break;
      case Kind::block:
        blocks_[op.layer].forward(x, in.shape, embedding, y, keep, dropout_on, rng,
                                  static_cast<std::uint32_t>(op.layer), draw);
        break;
      case Kind::attention:
        attentions_[op.layer].forward(x, in.shape, y, keep);
        break;
      case Kind::concat: {
        const Index left = in.shape.channels;
        y.leftCols(left) = x;
        y.rightCols(out.shape.channels - left) = nodes_[op.in2].value.view();
        break;
      }
      case Kind::upsample:
        upsample_nearest2x<Real>(x, in.shape, y);
        break;
    }
  }

  void run_backward(const Op& op, const Eigen::Ref<const Batch<Real>>& embedding,
                    Eigen::Ref<Batch<Real>>& d_embedding, bool input_gradient) {
    Node& in = nodes_[op.in];
    const Eigen::Map<const Batch<Real>> x = std::as_const(in.value).view();
    // An output nothing wrote into (no consumer) has gradient zero.
    Node& out = nodes_[op.out];
    written_grad(out);
    const Eigen::Map<const Batch<Real>> dy = std::as_const(out.grad).view();
    if (op.kind == Kind::conv && op.in == 0 && !input_gradient) {
      convs_[op.layer].backward(x, in.shape, dy);  // the input's gradient is not wanted
      return;
    }
    // Every op below writes the gradient of its input: the first to reach it overwrites.
    const bool accumulate = accumulate_into(in);
    switch (op.kind) {
      case Kind::conv:
        convs_[op.layer].backward(x, in.shape, dy, in.grad.view(), accumulate);
        break;
      case Kind::norm:
        norms_[op.layer].backward(x, in.shape, dy, in.grad.view(), accumulate);
        break;
      case Kind::block:
        blocks_[op.layer].backward(x, in.shape, embedding, dy, in.grad.view(), d_embedding,
                                   accumulate);
        break;
      case Kind::attention:
        attentions_[op.layer].backward(x, in.shape, dy, in.grad.view(), accumulate);
        break;
      case Kind::concat: {
        const Index left = in.shape.channels;
        Node& in2 = nodes_[op.in2];
        assign_or_add(in.grad.view(), dy.leftCols(left), accumulate);
        assign_or_add(in2.grad.view(), dy.rightCols(out.shape.channels - left),
                      accumulate_into(in2));
        break;
      }
      case Kind::upsample:
        upsample_nearest2x_backward<Real>(dy, in.shape, in.grad.view(), accumulate);
        break;
    }
  }

  template <class Source>
  static void assign_or_add(Eigen::Map<Batch<Real>> dst, const Source& src, bool accumulate) {
    if (accumulate) {
      dst += src;
    } else {
      dst = src;
    }
  }

  std::vector<Conv2d<Real>> convs_;
  std::vector<bool> conv_zero_;
  std::vector<GroupNorm<Real>> norms_;
  std::vector<ResBlock<Real>> blocks_;
  std::vector<bool> block_zero_;
  std::vector<SpatialAttention<Real>> attentions_;
  std::vector<bool> attention_zero_;
  std::vector<Op> ops_;
  std::vector<Node> nodes_;
};

}  // namespace ddpm::nn
