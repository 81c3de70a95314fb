// Errors of the OpenAI-compatible API: an HTTP status plus the fields of OpenAI's error object.
//
// The protocol functions (openai_request.h) throw ApiError; the HTTP layer turns it into a
// response with `status` and the body error_body() builds:
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "temperature", "code": null}}
// param and code are null when empty, as OpenAI sends them.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace dseek::server {

struct ApiError : std::exception {
  int status = 500;
  std::string type;     // "invalid_request_error", "not_found_error", "rate_limit_error", "server_error"
  std::string message;  // names the field: "'temperature' must be a number between 0 and 2"
  std::string param;    // the offending field ("messages[2].content"), or empty
  std::string code;     // machine-readable reason ("invalid_type", "invalid_value", ...), or empty

  ApiError(int status_, std::string type_, std::string message_, std::string param_ = {},
           std::string code_ = {})
      : status(status_),
        type(std::move(type_)),
        message(std::move(message_)),
        param(std::move(param_)),
        code(std::move(code_)) {}

  const char* what() const noexcept override { return message.c_str(); }

  // 400 invalid_request_error: what parse_chat_request and parse_completion_request throw.
  static ApiError invalid_request(std::string message_, std::string param_ = {}, std::string code_ = {}) {
    return ApiError(400, "invalid_request_error", std::move(message_), std::move(param_), std::move(code_));
  }
};

// OpenAI's error body as compact JSON text. Invalid UTF-8 in the message (it may quote user
// input) becomes U+FFFD rather than making dump() throw.
inline std::string error_body(const ApiError& e) {
  nlohmann::ordered_json err = nlohmann::ordered_json::object();
  err["message"] = e.message;
  err["type"] = e.type;
  err["param"] = e.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.param);
  err["code"] = e.code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(e.code);
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  body["error"] = std::move(err);
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace dseek::server
