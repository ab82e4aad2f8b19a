{
  "targets": [
    {
      "target_name": "maml_native",
      "sources": [
        "native/addon.cc",
        "native/binding/args.cc",
        "native/binding/cuda_host.cc",
        "native/binding/device.cc",
        "native/binding/fewshot_ops.cc",
        "native/binding/ops.cc",
        "native/cpu/fast_fewshot.cc",
        "native/cpu/fast_lanes.cc",
        "native/cpu/fast_meta.cc",
        "native/cpu/thread_pool.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except_all"
      ],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-psabi"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}
