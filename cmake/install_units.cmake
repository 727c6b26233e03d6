# Runs at install time (from cmake/install.cmake's install(CODE)): configures the systemd
# units and the tmpfiles.d snippet with the effective CMAKE_INSTALL_PREFIX and installs
# them, and the example config into <sysconfdir>/klingd unless one is already there.

# GNUInstallDirs' rules for absolute paths, applied to the install-time prefix.
function(klingd_full_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

klingd_full_path(KLINGD_BIN_DIR "${KLINGD_INSTALL_BINDIR}")
klingd_full_path(KLINGD_DOC_DIR "${KLINGD_INSTALL_DOCDIR}")
if(IS_ABSOLUTE "${KLINGD_INSTALL_SYSCONFDIR}")
  set(sysconf "${KLINGD_INSTALL_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(sysconf "/${KLINGD_INSTALL_SYSCONFDIR}") # /usr → /etc, as GNUInstallDirs does
else()
  set(sysconf "${CMAKE_INSTALL_PREFIX}/${KLINGD_INSTALL_SYSCONFDIR}")
endif()
set(KLINGD_SYSCONF_DIR "${sysconf}/klingd")
set(KLINGD_EXAMPLE_CONFIG "${KLINGD_DOC_DIR}/klingd.jsonc")
set(KLINGD_RUNTIME_SOCKET "/run/klingd/klingd.sock") # RuntimeDirectory= is always under /run

set(src "${KLINGD_SOURCE_DIR}/systemd")
set(out "${KLINGD_STAGING_DIR}")
configure_file("${src}/klingd.service.in" "${out}/system/klingd.service" @ONLY)
configure_file("${src}/klingd-user.service.in" "${out}/user/klingd.service" @ONLY)
configure_file("${src}/klingd.tmpfiles.conf.in" "${out}/tmpfiles/klingd.conf" @ONLY)

# file(INSTALL) adds $DESTDIR itself; EXISTS needs it spelled out.
klingd_full_path(unit_dir "${KLINGD_SYSTEMD_UNIT_DIR}")
klingd_full_path(user_unit_dir "${KLINGD_SYSTEMD_USER_UNIT_DIR}")
klingd_full_path(tmpfiles_dir "${KLINGD_TMPFILES_DIR}")
file(INSTALL "${out}/system/klingd.service" DESTINATION "${unit_dir}" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${out}/user/klingd.service" DESTINATION "${user_unit_dir}" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${out}/tmpfiles/klingd.conf" DESTINATION "${tmpfiles_dir}" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# An edited config survives a re-install or an upgrade.
if(EXISTS "$ENV{DESTDIR}${KLINGD_SYSCONF_DIR}/klingd.jsonc")
  message(STATUS "Keeping existing: $ENV{DESTDIR}${KLINGD_SYSCONF_DIR}/klingd.jsonc")
else()
  file(INSTALL "${KLINGD_SOURCE_DIR}/config/klingd.jsonc" DESTINATION "${KLINGD_SYSCONF_DIR}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
