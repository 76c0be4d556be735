// placeholder until safetensors lands
