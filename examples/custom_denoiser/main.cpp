// SPDX-License-Identifier: MIT
// A user's own network, written from scratch with Eigen (nothing from ddpm/nn), trained and
// sampled through ddpm's concepts: predict() makes it a Denoiser; backward(), zero_grad() and
// parameters() make it a TrainableDenoiser, so ddpm's Trainer, Adam and samplers all accept it.
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

#include "ddpm/data/toy2d.hpp"
#include "ddpm/ddpm.hpp"
#include "ddpm/eval/metrics.hpp"
#include "ddpm/train/trainer.hpp"

// eps_hat = W2 tanh(W1 [x, t/T, sin, cos features of t] + b1) + b2: one hidden layer, hand-written
// backward pass. Parameters live in one vector so ParameterBlocks can point into it.
class TinyNet {
 public:
  static constexpr int kFeatures = 2 + 8;  // x (2) and 8 time features
  explicit TinyNet(int hidden, int num_timesteps)
      : hidden_(hidden), T_(num_timesteps), values_(size(hidden)), grads_(size(hidden)) {
    const ddpm::CounterRng rng(1);
    for (std::size_t i = 0; i < values_.size(); ++i) {
      values_[i] = static_cast<float>(
          0.3 * (2.0 * rng.uniform(ddpm::stream::user, 0, 0, static_cast<std::uint32_t>(i)) - 1.0));
    }
    const std::size_t w1 = static_cast<std::size_t>(kFeatures * hidden),
                      b1 = static_cast<std::size_t>(hidden),
                      w2 = static_cast<std::size_t>(hidden * 2);
    std::size_t offset = 0;
    for (const auto& [name, n] : {std::pair{"w1", w1}, std::pair{"b1", b1}, std::pair{"w2", w2},
                                  std::pair{"b2", std::size_t{2}}}) {
      blocks_.push_back({name, std::span<float>(values_).subspan(offset, n),
                         std::span<float>(grads_).subspan(offset, n)});
      offset += n;
    }
  }

  // Denoiser: out = eps_hat for each row of x_t.
  void predict(const ddpm::Batch<float>& x_t, std::span<const int> t, ddpm::Batch<float>& out) {
    features_.resize(x_t.rows(), kFeatures);
    for (ddpm::Index i = 0; i < x_t.rows(); ++i) {
      const float s = static_cast<float>(t[static_cast<std::size_t>(i)]) / static_cast<float>(T_);
      features_(i, 0) = x_t(i, 0);
      features_(i, 1) = x_t(i, 1);
      for (int k = 0; k < 4; ++k) {
        features_(i, 2 + 2 * k) = std::sin(static_cast<float>(1 << k) * 3.14159f * s);
        features_(i, 3 + 2 * k) = std::cos(static_cast<float>(1 << k) * 3.14159f * s);
      }
    }
    hidden_out_ = ((features_ * w1()).rowwise() + b1()).array().tanh().matrix();
    out = (hidden_out_ * w2()).rowwise() + b2();
  }

  // TrainableDenoiser: accumulate d loss / d parameters from d loss / d out of the last predict().
  void backward(const ddpm::Batch<float>& grad_out) {
    const ddpm::Batch<float> grad_hidden =
        ((grad_out * w2().transpose()).array() * (1.0f - hidden_out_.array().square())).matrix();
    grad(2) += hidden_out_.transpose() * grad_out;
    grad(3) += grad_out.colwise().sum();
    grad(0) += features_.transpose() * grad_hidden;
    grad(1) += grad_hidden.colwise().sum();
  }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }
  std::span<ddpm::ParameterBlock<float>> parameters() { return blocks_; }

 private:
  using Map = Eigen::Map<ddpm::Batch<float>>;
  using RowMap = Eigen::Map<Eigen::RowVectorXf>;
  static std::size_t size(int h) { return static_cast<std::size_t>(kFeatures * h + h + 2 * h + 2); }
  Map view(std::span<float> s, ddpm::Index rows, ddpm::Index cols) {
    return Map(s.data(), rows, cols);
  }
  Map w1() { return view(blocks_[0].value, kFeatures, hidden_); }
  RowMap b1() { return RowMap(blocks_[1].value.data(), hidden_); }
  Map w2() { return view(blocks_[2].value, hidden_, 2); }
  RowMap b2() { return RowMap(blocks_[3].value.data(), 2); }
  Map grad(int k) {
    const ddpm::Index rows[] = {kFeatures, 1, hidden_, 1}, cols[] = {hidden_, hidden_, 2, 2};
    return view(blocks_[static_cast<std::size_t>(k)].grad, rows[k], cols[k]);
  }

  int hidden_, T_;
  std::vector<float> values_, grads_;
  std::vector<ddpm::ParameterBlock<float>> blocks_;
  ddpm::Batch<float> features_, hidden_out_;
};

static_assert(ddpm::TrainableDenoiser<TinyNet, float>);

int main() {
  const ddpm::NoiseSchedule schedule = ddpm::NoiseSchedule::linear(1000);
  TinyNet net(128, schedule.size());
  ddpm::train::Trainer<float, TinyNet> trainer(
      net, ddpm::GaussianDiffusion<float>(schedule),
      {.batch_size = 512, .steps = 3000, .adam = {.learning_rate = 3e-3}, .ema_decay = 0.99});
  const auto data = [](std::int64_t step, ddpm::Index n, ddpm::Batch<float>& out) {
    out = ddpm::data::sample_toy2d<float>(ddpm::data::ToyDataset::eight_gaussians, n, 1, step * n);
  };
  for (int step = 1; step <= 3000; ++step) {
    const ddpm::train::StepStats s = trainer.step(data);
    if (step % 500 == 0) std::printf("step %d  loss %.4f\n", step, s.loss);
  }
  const auto ema = trainer.ema_weights();
  ddpm::DdimSampler<float> sampler{ddpm::GaussianDiffusion<float>(schedule.respaced("ddim50"))};
  const ddpm::Batch<float> samples = sampler.sample(net, 2000, 2, ddpm::CounterRng(2));
  const ddpm::Batch<double> fresh =
      ddpm::data::sample_toy2d<double>(ddpm::data::ToyDataset::eight_gaussians, 2000, 3);
  std::printf("MMD^2 of 2000 DDIM-50 samples vs fresh 8gaussians data: %.3g\n",
              ddpm::eval::mmd2_rbf(samples.cast<double>(), fresh));
}
