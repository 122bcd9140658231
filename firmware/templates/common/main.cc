// netaug-mcu device application: TFLM + CMSIS-NN inference behind the MLPerf Tiny serial
// protocol with the netaug-mcu extensions (info, bload). See hil_tests/PROTOCOL.md.
// Generated files: model_config.h (sizes, names), model_ops.h (the op resolver), model_data.c.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <new>
#include <array>
#include <utility>

#include "board.h"
#include "board_config.h"
#include "model_config.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#if NETAUG_RECORDING
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#endif

extern "C" const unsigned char g_model_data[];
extern "C" const unsigned int g_model_data_len;

namespace {

constexpr size_t kCmdMax = 80;          // characters kept before '%' (EE_CMD_SIZE; the rest is dropped)
constexpr uint32_t kBloadTimeoutUs = BOARD_BLOAD_TIMEOUT_US;  // board_config.h: 500 ms, 5 s virtual on QEMU
constexpr size_t kInputBytes = NETAUG_INPUT_BYTES;   // int8 input tensor
#ifndef NETAUG_INPUT_FORMAT
#define NETAUG_INPUT_FORMAT 0           // 0 int8 tensor bytes, 1 uint8 minus 128 (ic01/vww01), 2 float32 (ad01)
#endif
#ifndef NETAUG_RESULTS_MSE
#define NETAUG_RESULTS_MSE 0            // ad01: one result, mean((dequant(out) - in)^2)
#endif
#ifndef NETAUG_ENERGY_MODE
#define NETAUG_ENERGY_MODE 0            // timestamps pulse a GPIO (or are logged) instead of m-lap-us
#endif
constexpr size_t kDbBytes = NETAUG_INPUT_FORMAT == 2 ? 4 * kInputBytes : kInputBytes;  // bytes one infer reads
constexpr uint32_t kDefaultWarmup = 10;  // `infer N` without W (reference code)

// The tensor arena: section chosen by the linker script (DTCM or SRAM1/2 on the STM32F746).
alignas(16) uint8_t g_arena[NETAUG_ARENA_BYTES] __attribute__((section(".arena")));
// db / bload buffer (dataset file bytes): section placed by the planner (DTCM, SRAM or SDRAM).
alignas(16) uint8_t g_input[kDbBytes] __attribute__((section(".input")));
size_t g_input_len = 0;                 // bytes stored (reference g_buff_pos)
size_t g_input_expected = 0;            // announced by `db load N` (reference g_buff_size)
#if NETAUG_INPUT_FORMAT == 2
int8_t g_tensor_in[kInputBytes];        // the quantized input tensor (th_load_tensor; 1/4 of the buffer)
#endif

using Resolver = tflite::MicroMutableOpResolver<NETAUG_NUM_OPS>;

// ---------------------------------------------------------------- per-op profiler (`prof%`)
// TFLM's own per-op hook (ScopedMicroProfiler in MicroInterpreterGraph::InvokeSubgraph) is compiled
// out of the release library (-DTF_LITE_STRIP_ERROR_STRINGS), so the resolver below hands the
// interpreter copies of the kernel registrations whose invoke is a timing trampoline: board ticks
// (DWT cycles on a board, the SysTick instruction-count proxy under QEMU -icount) around each
// kernel's invoke, one slot per executed operator. Off (one flag test per op) outside `prof%`; no
// arena bytes (the copies are static).
using InvokeFn = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);
InvokeFn g_kernel_invoke[NETAUG_NUM_OPS];
TFLMRegistration g_timed_reg[NETAUG_NUM_OPS];
const TFLMRegistration* g_timed_orig[NETAUG_NUM_OPS];
int g_timed_count = 0;
bool g_prof_on = false;
uint32_t g_prof_ticks[NETAUG_NUM_NODES];
uint32_t g_prof_n = 0;  // operators run in the profiled invoke (more than NETAUG_NUM_NODES: dropped)

template <int K>
TfLiteStatus timed_invoke(TfLiteContext* context, TfLiteNode* node) {
  if (!g_prof_on) return g_kernel_invoke[K](context, node);
  const uint64_t t0 = board_ticks();
  const TfLiteStatus st = g_kernel_invoke[K](context, node);
  const uint64_t dt = board_ticks() - t0;
  if (g_prof_n < NETAUG_NUM_NODES) g_prof_ticks[g_prof_n] = static_cast<uint32_t>(dt);
  ++g_prof_n;
  return st;
}
template <int... K>
constexpr std::array<InvokeFn, sizeof...(K)> timed_table(std::integer_sequence<int, K...>) {
  return {{&timed_invoke<K>...}};
}
constexpr std::array<InvokeFn, NETAUG_NUM_OPS> kTimedInvoke =
    timed_table(std::make_integer_sequence<int, NETAUG_NUM_OPS>{});

class TimedResolver : public tflite::MicroOpResolver {
 public:
  explicit TimedResolver(const Resolver& inner) : inner_(inner) {}
  const TFLMRegistration* FindOp(tflite::BuiltinOperator op) const override {
    return timed(inner_.FindOp(op));
  }
  const TFLMRegistration* FindOp(const char* op) const override { return timed(inner_.FindOp(op)); }
  tflite::TfLiteBridgeBuiltinParseFunction GetOpDataParser(tflite::BuiltinOperator op) const override {
    return inner_.GetOpDataParser(op);
  }

 private:
  static const TFLMRegistration* timed(const TFLMRegistration* reg) {
    if (reg == nullptr || reg->invoke == nullptr) return reg;
    for (int k = 0; k < g_timed_count; ++k) {
      if (g_timed_orig[k] == reg) return &g_timed_reg[k];
    }
    if (g_timed_count == NETAUG_NUM_OPS) return reg;  // cannot happen: one slot per registered op
    const int k = g_timed_count++;
    g_timed_orig[k] = reg;
    g_timed_reg[k] = *reg;
    g_kernel_invoke[k] = reg->invoke;
    g_timed_reg[k].invoke = kTimedInvoke[k];
    return &g_timed_reg[k];
  }
  const Resolver& inner_;
};

#if NETAUG_RECORDING
using Interpreter = tflite::RecordingMicroInterpreter;
#else
using Interpreter = tflite::MicroInterpreter;
#endif
alignas(Resolver) uint8_t g_resolver_mem[sizeof(Resolver)];
alignas(TimedResolver) uint8_t g_timed_mem[sizeof(TimedResolver)];
alignas(Interpreter) uint8_t g_interp_mem[sizeof(Interpreter)];
Interpreter* g_interp = nullptr;
const char* g_init_error = "model not initialised";

// ---------------------------------------------------------------- output helpers (no printf)
void put(const char* s) {
  while (*s) board_putc(*s++);
}
void put_n(const char* s, size_t n) {
  for (size_t i = 0; i < n && s[i]; ++i) board_putc(s[i]);
}
void put_u64(uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  put(&buf[i]);
}
void put_i32(int32_t v) {
  if (v < 0) {
    board_putc('-');
    put_u64(static_cast<uint64_t>(-static_cast<int64_t>(v)));
  } else {
    put_u64(static_cast<uint64_t>(v));
  }
}
// %0.6f: value rounded half away from zero to 6 decimals (an int8 step of a 1/256 scale is 0.003906).
void put_fixed6(float f) {
  const double v = f;
  if (v != v) {
    put("nan");
    return;
  }
  int64_t m = static_cast<int64_t>(v * 1000000.0 + (v < 0 ? -0.5 : 0.5));
  if (m < 0) {
    board_putc('-');
    m = -m;
  }
  put_u64(static_cast<uint64_t>(m / 1000000));
  board_putc('.');
  int64_t frac = m % 1000000;
  for (int64_t d = 100000; d; d /= 10) board_putc(static_cast<char>('0' + (frac / d) % 10));
}
void endl() { put("\r\n"); }
void line(const char* s) {
  put(s);
  endl();
}
void error(const char* msg) {
  put("e-[");
  put(msg);
  put("]\r\n");
}
void ready() { line("m-ready"); }

uint64_t now_us() {
  return board_ticks() * 1000000ull / board_ticks_per_second();
}

}  // namespace

// Energy mode: the timestamp is a GPIO pulse. Boards with a pin (STM32F746G-DISCO) define this; elsewhere
// (QEMU) the pulse is logged on the serial line as m-timestamp-pin-<us>.
extern "C" __attribute__((weak)) void board_timestamp_pulse(void) {
  put("m-timestamp-pin-");
  put_u64(now_us());
  endl();
}

namespace {

// th_timestamp(): m-lap-us-<us> in performance mode, the timestamp pulse in energy mode.
void timestamp() {
#if NETAUG_ENERGY_MODE
  board_timestamp_pulse();
#else
  put("m-lap-us-");
  put_u64(now_us());
  endl();
#endif
}

// C atoi(): optional sign and leading digits, 0 without (the reference parses counts with it).
int32_t atoi32(const char* s) {
  if (!s) return 0;
  bool neg = false;
  if (*s == '+' || *s == '-') neg = *s++ == '-';
  int64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    v = v * 10 + (*s - '0');
    if (v > 0x7FFFFFFF) v = 0x7FFFFFFF;
  }
  return static_cast<int32_t>(neg ? -v : v);
}

// ---------------------------------------------------------------- parsing helpers
// Decimal, no sign, < 2^31. Returns false on anything else.
bool parse_u32(const char* s, uint32_t* out) {
  if (!s || !*s) return false;
  uint64_t v = 0;
  for (; *s; ++s) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
    if (v > 0x7FFFFFFFull) return false;
  }
  *out = static_cast<uint32_t>(v);
  return true;
}
int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
bool parse_hex32(const char* s, uint32_t* out) {
  if (!s || !*s || strlen(s) > 8) return false;
  uint32_t v = 0;
  for (; *s; ++s) {
    int d = hex_val(*s);
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  *out = v;
  return true;
}

uint32_t crc32_update(uint32_t crc, uint8_t b) {
  crc ^= b;
  for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  return crc;
}

// ---------------------------------------------------------------- model
void model_init() {
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    g_init_error = "model schema version mismatch";
    return;
  }
  Resolver* resolver = new (g_resolver_mem) Resolver();
  if (netaug_register_ops(*resolver) != kTfLiteOk) {
    g_init_error = "op registration failed";
    return;
  }
  TimedResolver* timed = new (g_timed_mem) TimedResolver(*resolver);
  Interpreter* interp = new (g_interp_mem) Interpreter(model, *timed, g_arena, sizeof(g_arena));
  if (interp->AllocateTensors() != kTfLiteOk) {
    g_init_error = "AllocateTensors failed (arena too small?)";
    return;
  }
  if (interp->input(0)->bytes != kInputBytes) {
    g_init_error = "input tensor size differs from the generated NETAUG_INPUT_BYTES";
    return;
  }
  g_interp = interp;
}

// Element i of the int8 input tensor the last `infer` used. uint8 files are converted on the fly
// (x - 128 == x ^ 0x80), so a 96x96x3 VWW input needs no second buffer.
int8_t input_q(size_t i) {
#if NETAUG_INPUT_FORMAT == 2
  return g_tensor_in[i];
#elif NETAUG_INPUT_FORMAT == 1
  return static_cast<int8_t>(g_input[i] ^ 0x80u);
#else
  return static_cast<int8_t>(g_input[i]);
#endif
}

// The input tensor's bytes before every Invoke() (the planner reuses them for activations).
void copy_input(char* in) {
#if NETAUG_INPUT_FORMAT == 1
  for (size_t i = 0; i < kInputBytes; ++i) in[i] = static_cast<char>(g_input[i] ^ 0x80u);
#elif NETAUG_INPUT_FORMAT == 2
  memcpy(in, g_tensor_in, kInputBytes);
#else
  memcpy(in, g_input, kInputBytes);
#endif
}

// th_load_tensor(): db bytes -> int8 tensor (ic01/vww01: uint8 - 128; ad01: float32 quantized with the
// input scale / zero point, round half away from zero, clamped).
void load_tensor() {
#if NETAUG_INPUT_FORMAT == 2
  const TfLiteTensor* t = g_interp->input(0);
  for (size_t i = 0; i < kInputBytes; ++i) {
    float x;
    memcpy(&x, g_input + 4 * i, 4);
    float r = x / t->params.scale;
    int32_t q = static_cast<int32_t>(r < 0 ? r - 0.5f : r + 0.5f) + t->params.zero_point;
    g_tensor_in[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
  }
#endif
}

void print_results() {
  if (!g_interp) {
    error(g_init_error);
    return;
  }
  const TfLiteTensor* out = g_interp->output(0);
  const float scale = out->params.scale;
  const int32_t zp = out->params.zero_point;
  size_t n = out->bytes;
  if (out->type == kTfLiteInt8 || out->type == kTfLiteUInt8) {
    put("m-results-[");
#if NETAUG_RESULTS_MSE
    // ad01 reference: mean squared difference of the dequantized output and the float input
    const TfLiteTensor* in_t = g_interp->input(0);
    float diffsum = 0.0f;
    for (size_t i = 0; i < n && i < kInputBytes; ++i) {
      float x;
#if NETAUG_INPUT_FORMAT == 2
      memcpy(&x, g_input + 4 * i, 4);
#else
      x = in_t->params.scale * static_cast<float>(static_cast<int32_t>(input_q(i)) - in_t->params.zero_point);
#endif
      const float d = scale * static_cast<float>(out->data.int8[i] - zp) - x;
      diffsum += d * d;
    }
    (void)in_t;
    put_fixed6(diffsum / static_cast<float>(n));
#else
    for (size_t i = 0; i < n; ++i) {
      int32_t q = out->type == kTfLiteInt8 ? out->data.int8[i] : out->data.uint8[i];
      if (i) board_putc(',');
      put_fixed6(scale * static_cast<float>(q - zp));
    }
#endif
    put("]\r\nm-results-q-[");
    for (size_t i = 0; i < n; ++i) {
      if (i) board_putc(',');
      put_i32(out->type == kTfLiteInt8 ? out->data.int8[i] : out->data.uint8[i]);
    }
    put("]\r\n");
  } else if (out->type == kTfLiteFloat32) {
    put("m-results-[");
    for (size_t i = 0; i < n / 4; ++i) {
      if (i) board_putc(',');
      put_fixed6(out->data.f[i]);
    }
    put("]\r\n");
  } else {
    error("unsupported output tensor type");
  }
}

// ---------------------------------------------------------------- commands
void cmd_info() {
  put("m-info-[model=");
  put(NETAUG_MODEL_NAME);
  put(",arena=");
  put_u64(sizeof(g_arena));
  put(",arena_used=");
  put_u64(g_interp ? g_interp->arena_used_bytes() : 0);
  put(",input=");
  put_u64(kInputBytes);
  put(",output=");
  put_u64(g_interp ? g_interp->output(0)->bytes : NETAUG_OUTPUT_BYTES);
  put(",clock_hz=");
  put_u64(board_ticks_per_second());
  put(",timer=");
  put(board_timer_name);
  put(",bin=1,max_frame=");
  put_u64(kDbBytes);
  put(",stack=");
  put_u64(board_stack_size());
  put(",stack_used=");
  put_u64(board_stack_used());
  put(",input_format=");
  put(NETAUG_INPUT_FORMAT == 1 ? "uint8" : (NETAUG_INPUT_FORMAT == 2 ? "float32" : "int8"));
  put(",db_max=");
  put_u64(kDbBytes);
  put(",results=");
  put(NETAUG_RESULTS_MSE ? "mse" : "dequantized");
  put(",energy=");
  put_u64(NETAUG_ENERGY_MODE);
  put("]\r\n");
}

#if NETAUG_RECORDING
void cmd_alloc() {
  static const char* const names[] = {"eval_tensor", "persistent_tensor", "persistent_quant",
                                      "persistent_buffer", "variable_buffer", "node_and_registration",
                                      "op_data"};
  if (!g_interp) {
    error(g_init_error);
    return;
  }
  const tflite::RecordingMicroAllocator& a = g_interp->GetMicroAllocator();
  put("m-alloc-[");
  for (int t = 0; t < static_cast<int>(tflite::RecordedAllocationType::kNumAllocationTypes); ++t) {
    tflite::RecordedAllocation r = a.GetRecordedAllocation(static_cast<tflite::RecordedAllocationType>(t));
    if (t) board_putc(',');
    put(t < 7 ? names[t] : "other");
    board_putc('=');
    put_u64(r.requested_bytes);
    board_putc('/');
    put_u64(r.used_bytes);
    board_putc('/');
    put_u64(r.count);
  }
  const auto* sa = a.GetSimpleMemoryAllocator();
  put(",head=");
  put_u64(sa->GetNonPersistentUsedBytes());
  put(",tail=");
  put_u64(sa->GetPersistentUsedBytes());
  put(",used=");
  put_u64(g_interp->arena_used_bytes());
  put("]\r\n");
}
#endif

void print_buffer() {  // `db print`: the announced buffer, 8 bytes a line
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < g_input_expected; ++i) {
    if (i % 8 == 0) put("m-buffer-");
    board_putc(hex[g_input[i] >> 4]);
    board_putc(hex[g_input[i] & 15]);
    put((i + 1) % 8 == 0 || i + 1 == g_input_expected ? "\r\n" : "-");
  }
}

// Reference semantics (internally_implemented.cpp ee_buffer_parse), without its buffer overruns.
void cmd_db(char** tok, int ntok) {
  if (ntok < 2) {
    error("Command 'db' requires a subcommand");
  } else if (strcmp(tok[1], "load") == 0) {
    if (ntok < 3) {
      error("Command 'db load' requires the # of bytes");
      return;
    }
    const int32_t n = atoi32(tok[2]);
    if (n <= 0) {
      error("Command 'db load' must be >0 bytes");
      return;
    }
    g_input_len = 0;
    if (static_cast<size_t>(n) > kDbBytes) {  // reference: same text without e-[], then it overruns
      g_input_expected = 0;
      put("e-[Supplied buffer size ");
      put_u64(static_cast<uint64_t>(n));
      put(" exceeds maximum of ");
      put_u64(kDbBytes);
      put("]\r\n");
      return;
    }
    g_input_expected = static_cast<size_t>(n);
    put("m-[Expecting ");
    put_u64(static_cast<uint64_t>(n));
    put(" bytes]\r\n");
  } else if (strcmp(tok[1], "print") == 0) {
    print_buffer();
  } else {
    const char* hex = tok[1];
    const size_t len = strlen(hex);
    if (len % 2) {
      error("Insufficent number of hex digits");  // reference spelling
      return;
    }
    for (size_t i = 0; i < len; i += 2) {
      if (hex_val(hex[i]) < 0 || hex_val(hex[i + 1]) < 0) {
        put("e-[Invalid hex digit '");
        board_putc(hex[i]);
        board_putc(hex[i + 1]);
        put("']\r\n");
        return;
      }
      if (g_input_len >= g_input_expected) return;  // nothing announced / beyond N: ignored
      g_input[g_input_len++] = static_cast<uint8_t>((hex_val(hex[i]) << 4) | hex_val(hex[i + 1]));
      if (g_input_len == g_input_expected) {
        line("m-load-done");  // the rest of the digits is disregarded
        return;
      }
    }
  }
}

void cmd_bload(char** tok, int ntok) {
  uint32_t n = 0, crc_expected = 0;
  if (ntok != 3 || !parse_u32(tok[1], &n) || !parse_hex32(tok[2], &crc_expected)) {
    error("usage: bload <N> <crc32 hex>");
    return;
  }
  if (n != kDbBytes) {
    put("e-[bload size ");
    put_u64(n);
    put(" != input bytes ");
    put_u64(kDbBytes);
    put("]\r\n");
    return;
  }
  g_input_expected = 0;
  g_input_len = 0;
  line("m-bload-ready");
  uint32_t crc = 0xFFFFFFFFu;
  for (uint32_t i = 0; i < n; ++i) {
    int c = board_getc(kBloadTimeoutUs);
    if (c < 0) {
      error("bload timeout");
      return;
    }
    g_input[i] = static_cast<uint8_t>(c);
    crc = crc32_update(crc, static_cast<uint8_t>(c));
  }
  if ((crc ^ 0xFFFFFFFFu) != crc_expected) {
    error("bload crc mismatch");
    return;
  }
  g_input_expected = n;
  g_input_len = n;
  line("m-load-done");
}

// The interpreter is up and the whole input is loaded; else the error line (and false).
bool can_invoke() {
  if (!g_interp) {
    error(g_init_error);
    return false;
  }
  if (g_input_len < kDbBytes) {
    put("e-[input not loaded: ");
    put_u64(g_input_len);
    put(" of ");
    put_u64(kDbBytes);
    put(" bytes]\r\n");
    return false;
  }
  load_tensor();  // th_load_tensor(): db bytes -> the int8 input tensor
  return true;
}

// prof%: one warm-up invoke, then one with the per-op timer on: m-prof-ops-<operators run>,
// m-prof-ticks-[<ticks of operator 0>,...] (execution order), m-prof-total-<ticks of that Invoke()>.
void cmd_prof(int ntok) {
  if (ntok != 1) {
    error("usage: prof");
    return;
  }
  if (!can_invoke()) return;
  char* const in = g_interp->input(0)->data.raw;
  for (int pass = 0; pass < 2; ++pass) {
    copy_input(in);
    g_prof_n = 0;
    g_prof_on = pass == 1;
    const uint64_t t0 = board_ticks();
    const TfLiteStatus st = g_interp->Invoke();
    const uint64_t total = board_ticks() - t0;
    g_prof_on = false;
    if (st != kTfLiteOk) {
      error("Invoke failed");
      return;
    }
    if (pass == 0) continue;
    put("m-prof-ops-");
    put_u64(g_prof_n);
    put("\r\nm-prof-ticks-[");
    for (uint32_t i = 0; i < g_prof_n && i < NETAUG_NUM_NODES; ++i) {
      if (i) board_putc(',');
      put_u64(g_prof_ticks[i]);
    }
    put("]\r\nm-prof-total-");
    put_u64(total);
    endl();
  }
  line("m-prof-done");
}

void cmd_infer(char** tok, int ntok) {
  uint32_t n = 1, w = kDefaultWarmup;  // reference defaults: `infer` = 1 run after 10 warm-ups
  if (ntok >= 2) {
    const int32_t i = atoi32(tok[1]);
    if (i <= 0) {
      error("Inference iterations must be >0");
      return;
    }
    n = static_cast<uint32_t>(i);
    if (ntok >= 3) {
      const int32_t k = atoi32(tok[2]);
      if (k < 0) {
        error("Inference warmup must be >=0");
        return;
      }
      w = static_cast<uint32_t>(k);
    }
  }
  if (!can_invoke()) return;
  // TFLM's memory planner reuses the input tensor's bytes for later activations, so the input is
  // copied before every invoke (untimed in m-infer-cycles; ~1 cycle/byte inside the m-lap-us window).
  char* const in = g_interp->input(0)->data.raw;
  put("m-warmup-start-");
  put_u64(w);
  endl();
  for (uint32_t i = 0; i < w; ++i) {
    copy_input(in);
    if (g_interp->Invoke() != kTfLiteOk) {
      error("Invoke failed");
      return;
    }
  }
  line("m-warmup-done");
  put("m-infer-start-");
  put_u64(n);
  endl();
  timestamp();
  uint64_t invoke_ticks = 0;
  for (uint32_t i = 0; i < n; ++i) {
    copy_input(in);
    const uint64_t t0 = board_ticks();
    const TfLiteStatus st = g_interp->Invoke();
    invoke_ticks += board_ticks() - t0;
    if (st != kTfLiteOk) {
      error("Invoke failed");
      return;
    }
  }
  timestamp();
  put("m-infer-cycles-");
  put_u64(invoke_ticks);
  endl();
  line("m-infer-done");
  print_results();
}

const char* const kHelp[] = {
    "ULPMark for tinyML Firmware V0.0.1 (netaug-mcu)", "",
    "help         : Print this information", "name         : Print the name of the device",
    "timestsamp   : Generate a timetsamp", "db SUBCMD    : Manipulate a generic byte buffer",
    "  load N     : Allocate N bytes and set load counter", "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes",
    "  print [N=16] [offset=0]", "             : Print N bytes at offset as hex",
    "infer N [W=10]: Load input, execute N inferences after W warmup loops",
    "results      : Return the result fp32 vector",
    "info         : netaug-mcu extension: model, arena, sizes, timer",
    "bload N CRC  : netaug-mcu extension: N raw bytes follow, CRC-32 checked", nullptr};

void dispatch(char* cmd) {
  char* tok[5];
  int ntok = 0;
  char* p = cmd;
  while (*p && ntok < 5) {
    while (*p == ' ') *p++ = 0;
    if (!*p) break;
    tok[ntok++] = p;
    while (*p && *p != ' ') ++p;
  }
  // further tokens are ignored (reference strtok parsing)
  const char* c = ntok ? tok[0] : "";
  if (strcmp(c, "name") == 0) {
    line("m-name-dut-[netaug-mcu]");
  } else if (strcmp(c, "profile") == 0) {
    line("m-profile-[netaug-mcu 0.1]");
    put("m-model-[");
    put(NETAUG_MODEL_NAME);
    put("]\r\n");
  } else if (strcmp(c, "timestamp") == 0) {
    timestamp();
  } else if (strcmp(c, "help") == 0) {
    for (const char* const* h = kHelp; *h; ++h) line(*h);
  } else if (strcmp(c, "db") == 0) {
    cmd_db(tok, ntok);
  } else if (strcmp(c, "bload") == 0) {
    cmd_bload(tok, ntok);
  } else if (strcmp(c, "infer") == 0) {
    cmd_infer(tok, ntok);
  } else if (strcmp(c, "prof") == 0) {
    cmd_prof(ntok);
  } else if (strcmp(c, "results") == 0) {
    print_results();
  } else if (strcmp(c, "info") == 0) {
    cmd_info();
#if NETAUG_RECORDING
  } else if (strcmp(c, "alloc") == 0) {
    cmd_alloc();
#endif
#if NETAUG_FAULT_TEST
  } else if (strcmp(c, "fault") == 0) {  // debug builds only (--fault-test): deliberate fault
    if (ntok != 2 || fault_test(tok[1]) < 0) error("usage: fault stack|bus");
#endif
#if NETAUG_HAS_EXIT
  } else if (strcmp(c, "exit") == 0) {  // QEMU builds only: semihosting exit for test harnesses
    uint32_t code = 0;
    if (ntok == 2 && parse_u32(tok[1], &code) && code < 256) {
      put("m-exit-");
      put_u64(code);
      endl();
      board_exit(static_cast<int>(code));
    }
    error("usage: exit <0-255>");
#endif
  } else {
    put("e-[Unknown command: ");
    put_n(c, kCmdMax);
    put("]\r\n");
  }
}

}  // namespace

int main() {
  board_init(NETAUG_BAUD);
  line(NETAUG_ENERGY_MODE ? "m-timestamp-mode-energy" : "m-timestamp-mode-performance");
  timestamp();
  model_init();
  if (!g_interp) error(g_init_error);
  line("m-init-done");
  ready();

  static char cmd[kCmdMax + 1];
  size_t len = 0;
  for (;;) {
    int c = board_getc(0);
    if (c < 0) continue;
    if (c == '%') {
      cmd[len] = 0;  // an over-long line was cut to its first kCmdMax characters: it runs (reference)
      dispatch(cmd);
      ready();
      len = 0;
    } else if (c == '\r' || c == '\n') {
      // tolerated line noise between commands (terminals add them); never part of a command
    } else if (len < kCmdMax) {
      cmd[len++] = static_cast<char>(c);
    }
  }
}
