#include "dseek/tokenizer/tokenizer.h"

#include "dseek/tokenizer/tokenizer_impl.h"
#include "dseek/tokenizer/utf8.h"

namespace dseek {
namespace {

struct PieceSink {
  const BpeModel* model;
  BpeScratch* scratch;
  std::vector<int32_t>* out;
  static void call(void* ctx, std::string_view piece) {
    auto* s = static_cast<PieceSink*>(ctx);
    s->model->encode_piece(piece, *s->scratch, *s->out);
  }
};

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::encode(std::string_view text, bool add_special_tokens, EncodeState& st,
                             std::vector<int32_t>& out) const {
  if (add_special_tokens) out.insert(out.end(), prefix_ids.begin(), prefix_ids.end());
  if (!utf8::is_valid(text)) {
    st.lossy.clear();
    utf8::append_lossy(text, st.lossy);
    text = st.lossy;
  }
  PieceSink sink{&model, &st.bpe, &out};
  // Pass 1: non-normalized added tokens on the raw text; pass 2: normalized ones on each
  // remaining piece (the normalizer is the identity: only empty Sequences load).
  st.raw_segments.clear();
  raw_matcher.split(text, st.raw_segments);
  for (const auto& seg : st.raw_segments) {
    if (seg.token >= 0) {
      out.push_back(added[size_t(seg.token)].id);
      continue;
    }
    const std::string_view part = text.substr(seg.start, seg.end - seg.start);
    st.norm_segments.clear();
    norm_matcher.split(part, st.norm_segments);
    for (const auto& seg2 : st.norm_segments) {
      if (seg2.token >= 0) {
        out.push_back(added[size_t(seg2.token)].id);
      } else {
        pre_tokenizer.run(part.substr(seg2.start, seg2.end - seg2.start), st.pre, &PieceSink::call, &sink);
      }
    }
  }
  if (add_special_tokens) out.insert(out.end(), suffix_ids.begin(), suffix_ids.end());
}

void Tokenizer::encode_into(std::string_view text, bool add_special_tokens, std::vector<int32_t>& out) const {
  std::unique_ptr<EncodeState> st;
  {
    std::lock_guard<std::mutex> lock(impl_->pool_mu);
    if (!impl_->pool.empty()) {
      st = std::move(impl_->pool.back());
      impl_->pool.pop_back();
    }
  }
  if (!st) st = std::make_unique<EncodeState>();
  struct GiveBack {
    const Impl* impl;
    std::unique_ptr<EncodeState>& st;
    ~GiveBack() {
      std::lock_guard<std::mutex> lock(impl->pool_mu);
      impl->pool.push_back(std::move(st));
    }
  } give_back{impl_.get(), st};
  impl_->encode(text, add_special_tokens, *st, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_into(text, add_special_tokens, out);
  return out;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::string lossy;
  if (!utf8::is_valid(text)) {
    utf8::append_lossy(text, lossy);
    text = lossy;
  }
  std::vector<std::string> pieces;
  PreTokenizerScratch scratch;
  impl_->pre_tokenizer.run(
      text, scratch,
      [](void* ctx, std::string_view piece) { static_cast<std::vector<std::string>*>(ctx)->emplace_back(piece); },
      &pieces);
  return pieces;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::string bytes;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= m.id_limit || !m.id_known[size_t(id)]) continue;  // HF drops unknown ids
    if (skip_special_tokens && m.id_special[size_t(id)]) continue;
    bytes.append(m.id_bytes, m.id_bytes_off[size_t(id)], m.id_bytes_off[size_t(id) + 1] - m.id_bytes_off[size_t(id)]);
  }
  if (utf8::is_valid(bytes)) return bytes;
  std::string text;
  utf8::append_lossy(bytes, text);
  return text;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(std::string(token)); it != impl_->added_by_content.end()) {
    return it->second;
  }
  return impl_->model.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || size_t(id) >= m.id_limit) return {};
  if (m.id_added[size_t(id)] >= 0) return m.added[size_t(m.id_added[size_t(id)])].content;
  const std::string* t = m.model.id_to_token(id);
  return t ? *t : std::string();
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || size_t(id) >= m.id_limit || !m.id_known[size_t(id)]) return {};
  return std::string_view(m.id_bytes)
      .substr(m.id_bytes_off[size_t(id)], m.id_bytes_off[size_t(id) + 1] - m.id_bytes_off[size_t(id)]);
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_limit && impl_->id_special[size_t(id)];
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
size_t Tokenizer::vocab_size() const { return impl_->id_limit; }

}  // namespace dseek
