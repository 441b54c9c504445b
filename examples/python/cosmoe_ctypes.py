"""Greedy generation through the cosmoe C API with ctypes.

usage: python3 cosmoe_ctypes.py path/to/libcosmoe.so path/to/model.gguf
"""
import ctypes as C
import sys


class SamplingParams(C.Structure):  # cosmoe_sampling_params
    _fields_ = [("temperature", C.c_float), ("top_k", C.c_int32), ("top_p", C.c_float), ("seed", C.c_uint64)]


# bool (*cosmoe_token_fn)(int32_t token, const char *text, size_t text_len, void *user_data)
TOKEN_FN = C.CFUNCTYPE(C.c_bool, C.c_int32, C.c_void_p, C.c_size_t, C.c_void_p)
OK, BUFFER_TOO_SMALL = 0, 4

lib = C.CDLL(sys.argv[1])
lib.cosmoe_version.restype = C.c_char_p
lib.cosmoe_last_error.restype = C.c_char_p
lib.cosmoe_sampling_default_params.restype = SamplingParams
lib.cosmoe_model_load.argtypes = [C.c_char_p, C.c_void_p, C.POINTER(C.c_void_p)]
lib.cosmoe_session_new.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]
lib.cosmoe_tokenize.argtypes = [C.c_void_p, C.c_char_p, C.c_size_t, C.c_bool,
                                C.POINTER(C.c_int32), C.c_size_t, C.POINTER(C.c_size_t)]
lib.cosmoe_session_eval.argtypes = [C.c_void_p, C.POINTER(C.c_int32), C.c_size_t]
lib.cosmoe_session_generate.argtypes = [C.c_void_p, C.POINTER(SamplingParams), C.c_size_t, TOKEN_FN,
                                        C.c_void_p, C.POINTER(C.c_size_t), C.c_void_p]
lib.cosmoe_model_free.argtypes = [C.POINTER(C.c_void_p)]
lib.cosmoe_session_free.argtypes = [C.POINTER(C.c_void_p)]


def check(status, expected=OK):
    if status != expected:
        sys.exit(f"cosmoe: status {status}, expected {expected}: {lib.cosmoe_last_error().decode()}")


@TOKEN_FN
def on_token(token, text, text_len, user_data):
    print(C.string_at(text, text_len).decode("utf-8", "replace") if text_len else "", end="", flush=True)
    return True  # False would stop the generation


print("cosmoe", lib.cosmoe_version().decode())
model, session, n = C.c_void_p(), C.c_void_p(), C.c_size_t()
check(lib.cosmoe_model_load(sys.argv[2].encode(), None, C.byref(model)))  # params NULL: the defaults
check(lib.cosmoe_session_new(model, C.byref(session)))
text = b"Hello"
check(lib.cosmoe_tokenize(model, text, len(text), True, None, 0, C.byref(n)), BUFFER_TOO_SMALL)  # size query
ids = (C.c_int32 * n.value)()
check(lib.cosmoe_tokenize(model, text, len(text), True, ids, n.value, C.byref(n)))
check(lib.cosmoe_session_eval(session, ids, n.value))
params = lib.cosmoe_sampling_default_params()  # greedy (temperature 0)
check(lib.cosmoe_session_generate(session, C.byref(params), 8, on_token, None, C.byref(n), None))
print(f"\n{n.value} tokens generated")
lib.cosmoe_session_free(C.byref(session))
lib.cosmoe_model_free(C.byref(model))
print("python ok")
