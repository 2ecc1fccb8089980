{
  "targets": [
    {
      "target_name": "fundus_native",
      "sources": [
        "src/addon.cc",
        "src/context.cc",
        "src/conv.cc",
        "src/pool.cc",
        "src/matmul.cc",
        "src/eltwise.cc",
        "src/reduce.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "/usr/include/oneapi/dnnl"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": [
        "-fno-exceptions",
        "-O0",
        "-O2"
      ],
      "cflags_cc!": [
        "-fno-exceptions",
        "-fno-rtti",
        "-O0",
        "-O2"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O3",
        "-fopenmp",
        "-fexceptions"
      ],
      "ldflags": [
        "-fopenmp"
      ],
      "libraries": [
        "-ldnnl",
        "-lgomp"
      ]
    },
    {
      "target_name": "fundus_jpeg",
      "sources": [
        "src/jpeg.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": [
        "-fno-exceptions",
        "-O0",
        "-O2"
      ],
      "cflags_cc!": [
        "-fno-exceptions",
        "-fno-rtti",
        "-O0",
        "-O2"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-O3",
        "-fexceptions"
      ],
      "libraries": [
        "-ljpeg"
      ]
    }
  ]
}
