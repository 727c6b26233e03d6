# Writes OUT: a C++ file defining `const std::string_view NAME` (in namespace
# NAMESPACE) with the bytes of IN, as a raw string literal.
file(READ ${IN} content)
string(FIND "${content}" ")klingd_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter")
endif()
file(WRITE ${OUT}.tmp "// Generated from ${IN} by cmake/embed_file.cmake. Do not edit.\n#include <string_view>\nnamespace ${NAMESPACE} {\nextern const std::string_view ${NAME};\nconst std::string_view ${NAME} = R\"klingd_embed(${content})klingd_embed\";\n}\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
