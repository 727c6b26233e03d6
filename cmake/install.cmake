# `cmake --install`: binaries (install(TARGETS) in daemon/ and cli/), systemd units,
# sysusers.d/tmpfiles.d snippets, the example config and the model catalog, in the
# GNUInstallDirs places. Units are configured with the install paths, so they must be
# installed from the same configuration they were built with. Package builds: configure
# with -DCMAKE_INSTALL_PREFIX=/usr (config then goes to /etc) and install with DESTDIR.

# systemd looks in <prefix>/lib/systemd/... for /usr and /usr/local alike; these are not
# under CMAKE_INSTALL_LIBDIR, which is multiarch (lib/x86_64-linux-gnu) on Debian.
set(KLINGD_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd system unit directory (relative to the prefix, or absolute)")
set(KLINGD_SYSTEMD_USER_UNIT_DIR "lib/systemd/user" CACHE STRING "systemd user unit directory")
set(KLINGD_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "sysusers.d directory")
set(KLINGD_TMPFILES_DIR "lib/tmpfiles.d" CACHE STRING "tmpfiles.d directory")

# What the units and snippets name (absolute: systemd does not resolve relative paths).
set(KLINGD_BIN_DIR "${CMAKE_INSTALL_FULL_BINDIR}")
set(KLINGD_SYSCONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/klingd")
set(KLINGD_DOC_DIR "${CMAKE_INSTALL_FULL_DOCDIR}")
set(KLINGD_EXAMPLE_CONFIG "${CMAKE_INSTALL_FULL_DOCDIR}/klingd.jsonc")
set(KLINGD_RUNTIME_SOCKET "/run/klingd/klingd.sock")

set(KLINGD_SYSTEMD_OUT "${PROJECT_BINARY_DIR}/systemd")
configure_file(systemd/klingd.service.in "${KLINGD_SYSTEMD_OUT}/klingd.service" @ONLY)
configure_file(systemd/klingd-user.service.in "${KLINGD_SYSTEMD_OUT}/user/klingd.service" @ONLY)
configure_file(systemd/klingd.tmpfiles.conf.in "${KLINGD_SYSTEMD_OUT}/klingd.tmpfiles.conf" @ONLY)

install(FILES "${KLINGD_SYSTEMD_OUT}/klingd.service" DESTINATION "${KLINGD_SYSTEMD_UNIT_DIR}")
install(FILES "${KLINGD_SYSTEMD_OUT}/user/klingd.service" DESTINATION "${KLINGD_SYSTEMD_USER_UNIT_DIR}")
install(FILES systemd/klingd.sysusers.conf DESTINATION "${KLINGD_SYSUSERS_DIR}" RENAME klingd.conf)
install(FILES "${KLINGD_SYSTEMD_OUT}/klingd.tmpfiles.conf" DESTINATION "${KLINGD_TMPFILES_DIR}" RENAME klingd.conf)

# The model catalog as data (models_file may point here; the same catalog is built in).
install(FILES config/models.json DESTINATION "${CMAKE_INSTALL_DATADIR}/klingd")

# The documented example config: always in the doc directory; in <sysconfdir>/klingd only
# when there is none yet, so a re-install or upgrade never overwrites an edited config.
install(FILES config/klingd.jsonc DESTINATION "${CMAKE_INSTALL_DOCDIR}")
foreach(doc README.md docs/operations.md)
  if(EXISTS "${PROJECT_SOURCE_DIR}/${doc}")
    install(FILES "${doc}" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
  endif()
endforeach()
install(CODE "
  set(klingd_conf \"\$ENV{DESTDIR}${KLINGD_SYSCONF_DIR}/klingd.jsonc\")
  if(EXISTS \"\${klingd_conf}\")
    message(STATUS \"Keeping existing: \${klingd_conf}\")
  else()
    file(INSTALL \"${PROJECT_SOURCE_DIR}/config/klingd.jsonc\" DESTINATION \"\$ENV{DESTDIR}${KLINGD_SYSCONF_DIR}\"
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
")
