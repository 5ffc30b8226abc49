/* run_signature: run one signature of a SavedModel with TensorFlow's C API, no Python.
 *
 * Why it exists: tensorflow_model_server cannot be installed on these machines, so this
 * program does what its SavedModelBundle loader and Predict handler do, in the same C++
 * code the server links (the TensorFlow wheel's libtensorflow_cc): load the SavedModel with
 * tag "serve" (TF_LoadSessionFromSavedModel = tensorflow::LoadSavedModel: restore the
 * variables, run the init op with the asset paths), look the signature up in the loaded
 * MetaGraphDef's signature_def map to get the tensor names of its inputs and outputs, feed
 * and fetch those names in one Session::Run. If the model loads and runs here, the server's
 * loader can load and run it; tests/serving/test_c_loader.py checks the results.
 *
 * usage: run_signature EXPORT_DIR SIGNATURE OUT_DIR [INPUT_ALIAS=TENSOR_FILE ...]
 *
 * Every input of the signature must be given (as the server requires). stdout starts with
 * "method_name <the signature's>" (the server's Predict takes predict, classify and regress
 * signatures only). On success each output is written to OUT_DIR/<output alias>.tensor and
 * stdout ends with "status 0"; when TF_SessionRun fails, stdout ends with "status <TF_Code>"
 * and the status message on the lines after it, and the program exits with 2. Usage or load
 * errors exit with 1.
 *
 * Tensor files (both ways, native byte order): int32 TF_DataType, int32 rank, int64 dims
 * [rank], then the elements: raw values for fixed-size types; for TF_STRING, per element an
 * int64 length and the bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorflow/c/c_api.h"

#define MAX_TENSORS 16

static void die(const char *what, const char *detail) {
  fprintf(stderr, "run_signature: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

/* --- The few protobuf wire-format reads needed for MetaGraphDef.signature_def -------- */

typedef struct { const uint8_t *at, *end; } Bytes;

static uint64_t varint(Bytes *b) {
  uint64_t value = 0;
  for (int shift = 0; b->at < b->end && shift < 64; shift += 7) {
    uint8_t byte = *b->at++;
    value |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return value;
  }
  die("malformed MetaGraphDef", "bad varint");
  return 0;
}

/* The next field of the message in `b`: 1 with its number in *field and, when it is
 * length-delimited (strings, messages), its bytes in *value (else value is empty). */
static int next_field(Bytes *b, uint32_t *field, Bytes *value) {
  if (b->at >= b->end) return 0;
  uint64_t key = varint(b);
  uint64_t skip = 0;
  *field = (uint32_t)(key >> 3);
  value->at = value->end = b->at;
  switch (key & 7) {
    case 0: varint(b); return 1;
    case 1: skip = 8; break;
    case 5: skip = 4; break;
    case 2: skip = varint(b); value->at = b->at; value->end = b->at + skip; break;
    default: die("malformed MetaGraphDef", "unsupported wire type");
  }
  if (skip > (uint64_t)(b->end - b->at)) die("malformed MetaGraphDef", "field overruns message");
  b->at += skip;
  return 1;
}

static char *text(Bytes b) { return strndup((const char *)b.at, (size_t)(b.end - b.at)); }

static int equals(Bytes b, const char *s) {
  return (size_t)(b.end - b.at) == strlen(s) && memcmp(b.at, s, strlen(s)) == 0;
}

/* key (field 1) and value (field 2) of a protobuf map entry */
static void map_entry(Bytes entry, Bytes *key, Bytes *value) {
  uint32_t field;
  Bytes part;
  key->at = key->end = value->at = value->end = entry.at;
  while (next_field(&entry, &field, &part)) {
    if (field == 1) *key = part;
    if (field == 2) *value = part;
  }
}

typedef struct {
  int count;
  char *alias[MAX_TENSORS];
  char *tensor[MAX_TENSORS]; /* "op_name:index", TensorInfo.name */
} TensorMap;

/* SignatureDef.inputs (field 1) or .outputs (field 2): map<alias, TensorInfo>. */
static void tensor_map(Bytes signature, uint32_t which, TensorMap *out) {
  uint32_t field, info_field;
  Bytes entry, alias, info, name;
  out->count = 0;
  while (next_field(&signature, &field, &entry)) {
    if (field != which) continue;
    if (out->count == MAX_TENSORS) die("too many tensors in the signature", NULL);
    map_entry(entry, &alias, &info);
    out->alias[out->count] = text(alias);
    out->tensor[out->count] = NULL;
    while (next_field(&info, &info_field, &name))
      if (info_field == 1) out->tensor[out->count] = text(name); /* TensorInfo.name */
    if (!out->tensor[out->count]) die("signature tensor is not a dense tensor", out->alias[out->count]);
    out->count++;
  }
}

/* MetaGraphDef.signature_def (field 5): map<signature name, SignatureDef>; returns the
 * SignatureDef's method_name (field 3), which the server's Predict checks. */
static char *find_signature(const TF_Buffer *meta_graph, const char *name, TensorMap *inputs,
                            TensorMap *outputs) {
  Bytes meta = {meta_graph->data, (const uint8_t *)meta_graph->data + meta_graph->length};
  Bytes entry, key, signature, part;
  uint32_t field;
  while (next_field(&meta, &field, &entry)) {
    if (field != 5) continue;
    map_entry(entry, &key, &signature);
    if (equals(key, name)) {
      tensor_map(signature, 1, inputs);
      tensor_map(signature, 2, outputs);
      char *method_name = NULL;
      while (next_field(&signature, &field, &part))
        if (field == 3) method_name = text(part);
      return method_name ? method_name : strdup("");
    }
  }
  die("no such signature in the MetaGraphDef", name);
  return NULL;
}

/* --- Tensors ------------------------------------------------------------------------- */

static TF_Output graph_tensor(TF_Graph *graph, const char *tensor_name) {
  char *op_name = strdup(tensor_name);
  char *colon = strrchr(op_name, ':');
  int index = 0;
  if (colon) {
    index = atoi(colon + 1);
    *colon = '\0';
  }
  TF_Output output = {TF_GraphOperationByName(graph, op_name), index};
  if (!output.oper) die("no such operation in the graph", op_name);
  free(op_name);
  return output;
}

static void read_exactly(FILE *f, void *into, size_t size, const char *path) {
  if (size && fread(into, 1, size, f) != size) die("truncated tensor file", path);
}

static TF_Tensor *read_tensor(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  int32_t dtype, rank;
  int64_t dims[8], count = 1;
  read_exactly(f, &dtype, sizeof dtype, path);
  read_exactly(f, &rank, sizeof rank, path);
  if (rank < 0 || rank > 8) die("bad rank in tensor file", path);
  read_exactly(f, dims, sizeof(int64_t) * rank, path);
  for (int i = 0; i < rank; i++) count *= dims[i];
  TF_Tensor *tensor;
  if (dtype == TF_STRING) {
    tensor = TF_AllocateTensor(TF_STRING, dims, rank, sizeof(TF_TString) * count);
    TF_TString *strings = TF_TensorData(tensor);
    for (int64_t i = 0; i < count; i++) {
      int64_t size;
      read_exactly(f, &size, sizeof size, path);
      char *bytes = malloc(size ? size : 1);
      read_exactly(f, bytes, size, path);
      TF_StringInit(&strings[i]);
      TF_StringCopy(&strings[i], bytes, size);
      free(bytes);
    }
  } else {
    size_t size = TF_DataTypeSize(dtype) * count;
    tensor = TF_AllocateTensor(dtype, dims, rank, size);
    read_exactly(f, TF_TensorData(tensor), size, path);
  }
  fclose(f);
  return tensor;
}

static void write_tensor(const TF_Tensor *tensor, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) die("cannot write", path);
  int32_t dtype = TF_TensorType(tensor), rank = TF_NumDims(tensor);
  fwrite(&dtype, sizeof dtype, 1, f);
  fwrite(&rank, sizeof rank, 1, f);
  for (int i = 0; i < rank; i++) {
    int64_t dim = TF_Dim(tensor, i);
    fwrite(&dim, sizeof dim, 1, f);
  }
  if (dtype == TF_STRING) {
    const TF_TString *strings = TF_TensorData(tensor);
    for (int64_t i = 0; i < TF_TensorElementCount(tensor); i++) {
      int64_t size = (int64_t)TF_StringGetSize(&strings[i]);
      fwrite(&size, sizeof size, 1, f);
      fwrite(TF_StringGetDataPointer(&strings[i]), 1, size, f);
    }
  } else {
    fwrite(TF_TensorData(tensor), 1, TF_TensorByteSize(tensor), f);
  }
  if (fclose(f) != 0) die("cannot write", path);
}

/* --- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  if (argc < 4) die("usage", "run_signature EXPORT_DIR SIGNATURE OUT_DIR [ALIAS=FILE ...]");
  const char *export_dir = argv[1], *signature = argv[2], *out_dir = argv[3];

  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  TF_Buffer *meta_graph = TF_NewBuffer();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, export_dir, tags, 1, graph,
                                                     meta_graph, status);
  if (TF_GetCode(status) != TF_OK) die("TF_LoadSessionFromSavedModel failed", TF_Message(status));

  TensorMap inputs, outputs;
  printf("method_name %s\n", find_signature(meta_graph, signature, &inputs, &outputs));

  TF_Output feeds[MAX_TENSORS], fetches[MAX_TENSORS];
  TF_Tensor *feed_values[MAX_TENSORS], *fetch_values[MAX_TENSORS];
  if (argc - 4 != inputs.count) die("give every input of the signature, and only those", NULL);
  for (int i = 0; i < inputs.count; i++) {
    int given = 0;
    for (int a = 4; a < argc && !given; a++) {
      size_t length = strlen(inputs.alias[i]);
      if (strncmp(argv[a], inputs.alias[i], length) == 0 && argv[a][length] == '=') {
        feeds[i] = graph_tensor(graph, inputs.tensor[i]);
        feed_values[i] = read_tensor(argv[a] + length + 1);
        given = 1;
      }
    }
    if (!given) die("missing input", inputs.alias[i]);
  }
  for (int i = 0; i < outputs.count; i++) fetches[i] = graph_tensor(graph, outputs.tensor[i]);

  TF_SessionRun(session, NULL, feeds, feed_values, inputs.count, fetches, fetch_values,
                outputs.count, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) {
    printf("status %d\n%s\n", (int)TF_GetCode(status), TF_Message(status));
    return 2;
  }
  for (int i = 0; i < outputs.count; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.tensor", out_dir, outputs.alias[i]);
    write_tensor(fetch_values[i], path);
    printf("%s <- %s\n", outputs.alias[i], outputs.tensor[i]);
    TF_DeleteTensor(fetch_values[i]);
  }
  for (int i = 0; i < inputs.count; i++) TF_DeleteTensor(feed_values[i]);
  printf("status 0\n");

  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteBuffer(meta_graph);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}
