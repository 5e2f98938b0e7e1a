//! Generates the ONNX protobuf messages from the official `proto/onnx.proto` with
//! rust-protobuf's pure-Rust parser (no protoc).

fn main() {
    protobuf_codegen::Codegen::new()
        .pure()
        .includes(["proto"])
        .input("proto/onnx.proto")
        .cargo_out_dir("onnx-protos")
        .run_from_script();
}
