/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * ABI layout of include/linux/iommufd.h and include/linux/vfio.h: every
 * struct size, the offset of the fields the spec names, and every ioctl
 * number, checked at compile time against the numbers in docs/spec
 * (uapi.md §1-§2 and §6, noiommu.md §2, edu.md §6). If this file compiles,
 * the layouts are right; the runtime part repeats the checks as TAP lines.
 */
#include "harness.h"

#include <stddef.h>

#define SZ(type, n) _Static_assert(sizeof(struct type) == (n), #type " size")
#define OFF(type, field, n) \
	_Static_assert(offsetof(struct type, field) == (n), #type "." #field)
#define NUM(name, n) _Static_assert((name) == (n), #name " number")

/* ---------------- iommufd structs ---------------- */
SZ(iommu_destroy, 8);
OFF(iommu_destroy, id, 4);

SZ(iommu_ioas_alloc, 12);
OFF(iommu_ioas_alloc, flags, 4);
OFF(iommu_ioas_alloc, out_ioas_id, 8);

SZ(iommu_iova_range, 16);
OFF(iommu_iova_range, last, 8);

SZ(iommu_ioas_iova_ranges, 32);
OFF(iommu_ioas_iova_ranges, ioas_id, 4);
OFF(iommu_ioas_iova_ranges, num_iovas, 8);
OFF(iommu_ioas_iova_ranges, __reserved, 12);
OFF(iommu_ioas_iova_ranges, allowed_iovas, 16);
OFF(iommu_ioas_iova_ranges, out_iova_alignment, 24);

SZ(iommu_ioas_allow_iovas, 24);
OFF(iommu_ioas_allow_iovas, num_iovas, 8);
OFF(iommu_ioas_allow_iovas, __reserved, 12);
OFF(iommu_ioas_allow_iovas, allowed_iovas, 16);

SZ(iommu_ioas_map, 40);
OFF(iommu_ioas_map, flags, 4);
OFF(iommu_ioas_map, ioas_id, 8);
OFF(iommu_ioas_map, __reserved, 12);
OFF(iommu_ioas_map, user_va, 16);
OFF(iommu_ioas_map, length, 24);
OFF(iommu_ioas_map, iova, 32);

SZ(iommu_ioas_map_file, 40);
OFF(iommu_ioas_map_file, ioas_id, 8);
OFF(iommu_ioas_map_file, fd, 12);
OFF(iommu_ioas_map_file, start, 16);
OFF(iommu_ioas_map_file, length, 24);
OFF(iommu_ioas_map_file, iova, 32);

SZ(iommu_ioas_copy, 40);
OFF(iommu_ioas_copy, dst_ioas_id, 8);
OFF(iommu_ioas_copy, src_ioas_id, 12);
OFF(iommu_ioas_copy, length, 16);
OFF(iommu_ioas_copy, dst_iova, 24);
OFF(iommu_ioas_copy, src_iova, 32);

SZ(iommu_ioas_unmap, 24);
OFF(iommu_ioas_unmap, ioas_id, 4);
OFF(iommu_ioas_unmap, iova, 8);
OFF(iommu_ioas_unmap, length, 16);

SZ(iommu_option, 24);
OFF(iommu_option, option_id, 4);
OFF(iommu_option, op, 8);
OFF(iommu_option, __reserved, 10);
OFF(iommu_option, object_id, 12);
OFF(iommu_option, val64, 16);

SZ(iommu_vfio_ioas, 12);
OFF(iommu_vfio_ioas, ioas_id, 4);
OFF(iommu_vfio_ioas, op, 8);
OFF(iommu_vfio_ioas, __reserved, 10);

SZ(iommu_hwpt_vtd_s1, 24);
OFF(iommu_hwpt_vtd_s1, addr_width, 16);
SZ(iommu_hwpt_arm_smmuv3, 16);

SZ(iommu_hwpt_alloc, 48);
OFF(iommu_hwpt_alloc, dev_id, 8);
OFF(iommu_hwpt_alloc, pt_id, 12);
OFF(iommu_hwpt_alloc, out_hwpt_id, 16);
OFF(iommu_hwpt_alloc, __reserved, 20);
OFF(iommu_hwpt_alloc, data_type, 24);
OFF(iommu_hwpt_alloc, data_len, 28);
OFF(iommu_hwpt_alloc, data_uptr, 32);
OFF(iommu_hwpt_alloc, fault_id, 40);
OFF(iommu_hwpt_alloc, __reserved2, 44);

SZ(iommu_hw_info_vtd, 24);
OFF(iommu_hw_info_vtd, cap_reg, 8);
OFF(iommu_hw_info_vtd, ecap_reg, 16);
SZ(iommu_hw_info_arm_smmuv3, 40);
OFF(iommu_hw_info_arm_smmuv3, idr, 8);
OFF(iommu_hw_info_arm_smmuv3, iidr, 32);
OFF(iommu_hw_info_arm_smmuv3, aidr, 36);
SZ(iommu_hw_info_tegra241_cmdqv, 8);

SZ(iommu_hw_info, 40);
OFF(iommu_hw_info, flags, 4);
OFF(iommu_hw_info, dev_id, 8);
OFF(iommu_hw_info, data_len, 12);
OFF(iommu_hw_info, data_uptr, 16);
OFF(iommu_hw_info, in_data_type, 24);
OFF(iommu_hw_info, out_data_type, 24);
OFF(iommu_hw_info, out_max_pasid_log2, 28);
OFF(iommu_hw_info, __reserved, 29);
OFF(iommu_hw_info, out_capabilities, 32);

SZ(iommu_hwpt_set_dirty_tracking, 16);
OFF(iommu_hwpt_set_dirty_tracking, hwpt_id, 8);
OFF(iommu_hwpt_set_dirty_tracking, __reserved, 12);

SZ(iommu_hwpt_get_dirty_bitmap, 48);
OFF(iommu_hwpt_get_dirty_bitmap, hwpt_id, 4);
OFF(iommu_hwpt_get_dirty_bitmap, flags, 8);
OFF(iommu_hwpt_get_dirty_bitmap, iova, 16);
OFF(iommu_hwpt_get_dirty_bitmap, length, 24);
OFF(iommu_hwpt_get_dirty_bitmap, page_size, 32);
OFF(iommu_hwpt_get_dirty_bitmap, data, 40);

SZ(iommu_hwpt_vtd_s1_invalidate, 24);
SZ(iommu_viommu_arm_smmuv3_invalidate, 16);
SZ(iommu_hwpt_invalidate, 32);
OFF(iommu_hwpt_invalidate, hwpt_id, 4);
OFF(iommu_hwpt_invalidate, data_uptr, 8);
OFF(iommu_hwpt_invalidate, data_type, 16);
OFF(iommu_hwpt_invalidate, entry_len, 20);
OFF(iommu_hwpt_invalidate, entry_num, 24);
OFF(iommu_hwpt_invalidate, __reserved, 28);

SZ(iommu_hwpt_pgfault, 40);
OFF(iommu_hwpt_pgfault, dev_id, 4);
OFF(iommu_hwpt_pgfault, pasid, 8);
OFF(iommu_hwpt_pgfault, grpid, 12);
OFF(iommu_hwpt_pgfault, perm, 16);
OFF(iommu_hwpt_pgfault, addr, 24);
OFF(iommu_hwpt_pgfault, length, 32);
OFF(iommu_hwpt_pgfault, cookie, 36);
SZ(iommu_hwpt_page_response, 8);

SZ(iommu_fault_alloc, 16);
OFF(iommu_fault_alloc, out_fault_id, 8);
OFF(iommu_fault_alloc, out_fault_fd, 12);

SZ(iommu_viommu_tegra241_cmdqv, 16);
SZ(iommu_viommu_alloc, 40);
OFF(iommu_viommu_alloc, type, 8);
OFF(iommu_viommu_alloc, dev_id, 12);
OFF(iommu_viommu_alloc, hwpt_id, 16);
OFF(iommu_viommu_alloc, out_viommu_id, 20);
OFF(iommu_viommu_alloc, data_len, 24);
OFF(iommu_viommu_alloc, __reserved, 28);
OFF(iommu_viommu_alloc, data_uptr, 32);

SZ(iommu_vdevice_alloc, 24);
OFF(iommu_vdevice_alloc, viommu_id, 4);
OFF(iommu_vdevice_alloc, dev_id, 8);
OFF(iommu_vdevice_alloc, out_vdevice_id, 12);
OFF(iommu_vdevice_alloc, virt_id, 16);

SZ(iommu_ioas_change_process, 8);
OFF(iommu_ioas_change_process, __reserved, 4);

SZ(iommufd_vevent_header, 8);
SZ(iommu_vevent_arm_smmuv3, 32);
SZ(iommu_vevent_tegra241_cmdqv, 16);
SZ(iommu_veventq_alloc, 32);
OFF(iommu_veventq_alloc, viommu_id, 8);
OFF(iommu_veventq_alloc, type, 12);
OFF(iommu_veventq_alloc, veventq_depth, 16);
OFF(iommu_veventq_alloc, out_veventq_id, 20);
OFF(iommu_veventq_alloc, out_veventq_fd, 24);
OFF(iommu_veventq_alloc, __reserved, 28);

SZ(iommu_hw_queue_alloc, 40);
OFF(iommu_hw_queue_alloc, viommu_id, 8);
OFF(iommu_hw_queue_alloc, type, 12);
OFF(iommu_hw_queue_alloc, index, 16);
OFF(iommu_hw_queue_alloc, out_hw_queue_id, 20);
OFF(iommu_hw_queue_alloc, nesting_parent_iova, 24);
OFF(iommu_hw_queue_alloc, length, 32);

SZ(iommu_ioas_noiommu_get_pa, 40);
OFF(iommu_ioas_noiommu_get_pa, flags, 4);
OFF(iommu_ioas_noiommu_get_pa, ioas_id, 8);
OFF(iommu_ioas_noiommu_get_pa, __reserved, 12);
OFF(iommu_ioas_noiommu_get_pa, iova, 16);
OFF(iommu_ioas_noiommu_get_pa, length, 24);
OFF(iommu_ioas_noiommu_get_pa, out_phys, 32);

/* ---------------- iommufd numbers ---------------- */
NUM(IOMMUFD_TYPE, 0x3b);
NUM(IOMMU_DESTROY, 0x3b80);
NUM(IOMMU_IOAS_ALLOC, 0x3b81);
NUM(IOMMU_IOAS_ALLOW_IOVAS, 0x3b82);
NUM(IOMMU_IOAS_COPY, 0x3b83);
NUM(IOMMU_IOAS_IOVA_RANGES, 0x3b84);
NUM(IOMMU_IOAS_MAP, 0x3b85);
NUM(IOMMU_IOAS_UNMAP, 0x3b86);
NUM(IOMMU_OPTION, 0x3b87);
NUM(IOMMU_VFIO_IOAS, 0x3b88);
NUM(IOMMU_HWPT_ALLOC, 0x3b89);
NUM(IOMMU_GET_HW_INFO, 0x3b8a);
NUM(IOMMU_HWPT_SET_DIRTY_TRACKING, 0x3b8b);
NUM(IOMMU_HWPT_GET_DIRTY_BITMAP, 0x3b8c);
NUM(IOMMU_HWPT_INVALIDATE, 0x3b8d);
NUM(IOMMU_FAULT_QUEUE_ALLOC, 0x3b8e);
NUM(IOMMU_IOAS_MAP_FILE, 0x3b8f);
NUM(IOMMU_VIOMMU_ALLOC, 0x3b90);
NUM(IOMMU_VDEVICE_ALLOC, 0x3b91);
NUM(IOMMU_IOAS_CHANGE_PROCESS, 0x3b92);
NUM(IOMMU_VEVENTQ_ALLOC, 0x3b93);
NUM(IOMMU_HW_QUEUE_ALLOC, 0x3b94);
NUM(IOMMU_IOAS_NOIOMMU_GET_PA, 0x3b95);

/* ---------------- iommufd flag and enum values ---------------- */
NUM(IOMMU_IOAS_MAP_FIXED_IOVA, 1);
NUM(IOMMU_IOAS_MAP_WRITEABLE, 2);
NUM(IOMMU_IOAS_MAP_READABLE, 4);
NUM(IOMMU_OPTION_RLIMIT_MODE, 0);
NUM(IOMMU_OPTION_HUGE_PAGES, 1);
NUM(IOMMU_OPTION_OP_SET, 0);
NUM(IOMMU_OPTION_OP_GET, 1);
NUM(IOMMU_VFIO_IOAS_GET, 0);
NUM(IOMMU_VFIO_IOAS_SET, 1);
NUM(IOMMU_VFIO_IOAS_CLEAR, 2);
NUM(IOMMU_HWPT_ALLOC_NEST_PARENT, 1);
NUM(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 2);
NUM(IOMMU_HWPT_FAULT_ID_VALID, 4);
NUM(IOMMU_HWPT_ALLOC_PASID, 8);
NUM(IOMMU_HWPT_DATA_NONE, 0);
NUM(IOMMU_HWPT_DATA_VTD_S1, 1);
NUM(IOMMU_HWPT_DATA_ARM_SMMUV3, 2);
NUM(IOMMU_HW_INFO_FLAG_INPUT_TYPE, 1);
NUM(IOMMU_HW_INFO_TYPE_NONE, 0);
NUM(IOMMU_HW_INFO_TYPE_DEFAULT, 0);
NUM(IOMMU_HW_INFO_TYPE_INTEL_VTD, 1);
NUM(IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 2);
NUM(IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV, 3);
NUM(IOMMU_HW_CAP_DIRTY_TRACKING, 1);
NUM(IOMMU_HW_CAP_PCI_PASID_EXEC, 2);
NUM(IOMMU_HW_CAP_PCI_PASID_PRIV, 4);
NUM(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, 8);
NUM(IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 1);
NUM(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 1);
NUM(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, 0);
NUM(IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3, 1);
NUM(IOMMU_VTD_INV_FLAGS_LEAF, 1);
NUM(IOMMU_PGFAULT_FLAGS_PASID_VALID, 1);
NUM(IOMMU_PGFAULT_FLAGS_LAST_PAGE, 2);
NUM(IOMMU_PGFAULT_PERM_READ, 1);
NUM(IOMMU_PGFAULT_PERM_WRITE, 2);
NUM(IOMMU_PGFAULT_PERM_EXEC, 4);
NUM(IOMMU_PGFAULT_PERM_PRIV, 8);
NUM(IOMMUFD_PAGE_RESP_SUCCESS, 0);
NUM(IOMMUFD_PAGE_RESP_INVALID, 1);
NUM(IOMMU_VIOMMU_TYPE_DEFAULT, 0);
NUM(IOMMU_VIOMMU_TYPE_ARM_SMMUV3, 1);
NUM(IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV, 2);
NUM(IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 1);
NUM(IOMMU_VEVENTQ_TYPE_DEFAULT, 0);
NUM(IOMMU_VEVENTQ_TYPE_ARM_SMMUV3, 1);
NUM(IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV, 2);
NUM(IOMMU_HW_QUEUE_TYPE_DEFAULT, 0);
NUM(IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV, 1);

/* ---------------- VFIO structs ---------------- */
SZ(vfio_info_cap_header, 8);
OFF(vfio_info_cap_header, version, 2);
OFF(vfio_info_cap_header, next, 4);

SZ(vfio_group_status, 8);

SZ(vfio_device_info, 24);
OFF(vfio_device_info, num_regions, 8);
OFF(vfio_device_info, num_irqs, 12);
OFF(vfio_device_info, cap_offset, 16);
OFF(vfio_device_info, pad, 20);
SZ(vfio_device_info_cap_pci_atomic_comp, 16);

SZ(vfio_region_info, 32);
OFF(vfio_region_info, index, 8);
OFF(vfio_region_info, cap_offset, 12);
OFF(vfio_region_info, size, 16);
OFF(vfio_region_info, offset, 24);
SZ(vfio_region_sparse_mmap_area, 16);
SZ(vfio_region_info_cap_sparse_mmap, 16);
OFF(vfio_region_info_cap_sparse_mmap, nr_areas, 8);
OFF(vfio_region_info_cap_sparse_mmap, areas, 16);
SZ(vfio_region_info_cap_type, 16);
OFF(vfio_region_info_cap_type, type, 8);
OFF(vfio_region_info_cap_type, subtype, 12);
SZ(vfio_region_gfx_edid, 24);
SZ(vfio_device_migration_info, 32);
OFF(vfio_device_migration_info, pending_bytes, 8);
SZ(vfio_region_info_cap_nvlink2_ssatgt, 16);
SZ(vfio_region_info_cap_nvlink2_lnkspd, 16);
SZ(vfio_iommu_spapr_tce_ddw_info, 16);
SZ(vfio_iommu_spapr_tce_info, 32);
SZ(vfio_eeh_pe_err, 24);
SZ(vfio_eeh_pe_op, 40);
SZ(vfio_iommu_spapr_register_memory, 24);
SZ(vfio_iommu_spapr_tce_create, 40);
OFF(vfio_iommu_spapr_tce_create, window_size, 16);
OFF(vfio_iommu_spapr_tce_create, start_addr, 32);
SZ(vfio_iommu_spapr_tce_remove, 16);

SZ(vfio_irq_info, 16);
OFF(vfio_irq_info, index, 8);
OFF(vfio_irq_info, count, 12);

SZ(vfio_irq_set, 20);
OFF(vfio_irq_set, index, 8);
OFF(vfio_irq_set, start, 12);
OFF(vfio_irq_set, count, 16);
OFF(vfio_irq_set, data, 20);

SZ(vfio_pci_dependent_device, 8);
OFF(vfio_pci_dependent_device, segment, 4);
OFF(vfio_pci_dependent_device, bus, 6);
OFF(vfio_pci_dependent_device, devfn, 7);
SZ(vfio_pci_hot_reset_info, 12);
OFF(vfio_pci_hot_reset_info, devices, 12);
SZ(vfio_pci_hot_reset, 12);
OFF(vfio_pci_hot_reset, group_fds, 12);

SZ(vfio_device_gfx_plane_info, 64);
OFF(vfio_device_gfx_plane_info, drm_format_mod, 16);
OFF(vfio_device_gfx_plane_info, region_index, 56);
SZ(vfio_device_ioeventfd, 32);
OFF(vfio_device_ioeventfd, offset, 8);
OFF(vfio_device_ioeventfd, data, 16);
OFF(vfio_device_ioeventfd, fd, 24);

SZ(vfio_device_feature, 8);
OFF(vfio_device_feature, data, 8);

SZ(vfio_device_bind_iommufd, 24);
OFF(vfio_device_bind_iommufd, flags, 4);
OFF(vfio_device_bind_iommufd, iommufd, 8);
OFF(vfio_device_bind_iommufd, out_devid, 12);
OFF(vfio_device_bind_iommufd, token_uuid_ptr, 16);

SZ(vfio_device_attach_iommufd_pt, 16);
OFF(vfio_device_attach_iommufd_pt, pt_id, 8);
OFF(vfio_device_attach_iommufd_pt, pasid, 12);

SZ(vfio_device_detach_iommufd_pt, 12);
OFF(vfio_device_detach_iommufd_pt, pasid, 8);

SZ(vfio_device_feature_migration, 8);
SZ(vfio_device_feature_mig_state, 8);
SZ(vfio_precopy_info, 24);
SZ(vfio_device_low_power_entry_with_wakeup, 8);
SZ(vfio_device_feature_dma_logging_control, 24);
SZ(vfio_device_feature_dma_logging_range, 16);
SZ(vfio_device_feature_dma_logging_report, 32);
SZ(vfio_device_feature_mig_data_size, 8);
SZ(vfio_device_feature_bus_master, 4);
SZ(vfio_region_dma_range, 16);
SZ(vfio_device_feature_dma_buf, 16);

SZ(vfio_iommu_type1_info, 24);
OFF(vfio_iommu_type1_info, iova_pgsizes, 8);
OFF(vfio_iommu_type1_info, cap_offset, 16);
OFF(vfio_iommu_type1_info, pad, 20);
SZ(vfio_iova_range, 16);
SZ(vfio_iommu_type1_info_cap_iova_range, 16);
OFF(vfio_iommu_type1_info_cap_iova_range, nr_iovas, 8);
OFF(vfio_iommu_type1_info_cap_iova_range, reserved, 12);
OFF(vfio_iommu_type1_info_cap_iova_range, iova_ranges, 16);
SZ(vfio_iommu_type1_info_cap_migration, 32);
SZ(vfio_iommu_type1_info_dma_avail, 12);
OFF(vfio_iommu_type1_info_dma_avail, avail, 8);

SZ(vfio_iommu_type1_dma_map, 32);
OFF(vfio_iommu_type1_dma_map, vaddr, 8);
OFF(vfio_iommu_type1_dma_map, iova, 16);
OFF(vfio_iommu_type1_dma_map, size, 24);
SZ(vfio_bitmap, 24);
SZ(vfio_iommu_type1_dma_unmap, 24);
OFF(vfio_iommu_type1_dma_unmap, iova, 8);
OFF(vfio_iommu_type1_dma_unmap, size, 16);
OFF(vfio_iommu_type1_dma_unmap, data, 24);
SZ(vfio_iommu_type1_dirty_bitmap, 8);
SZ(vfio_iommu_type1_dirty_bitmap_get, 40);

/* ---------------- VFIO numbers and values ---------------- */
NUM(VFIO_API_VERSION, 0);
NUM(VFIO_TYPE, 0x3b);
NUM(VFIO_BASE, 100);
NUM(VFIO_GET_API_VERSION, 0x3b64);
NUM(VFIO_CHECK_EXTENSION, 0x3b65);
NUM(VFIO_SET_IOMMU, 0x3b66);
NUM(VFIO_GROUP_GET_STATUS, 0x3b67);
NUM(VFIO_GROUP_SET_CONTAINER, 0x3b68);
NUM(VFIO_GROUP_UNSET_CONTAINER, 0x3b69);
NUM(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
NUM(VFIO_DEVICE_GET_INFO, 0x3b6b);
NUM(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
NUM(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
NUM(VFIO_DEVICE_SET_IRQS, 0x3b6e);
NUM(VFIO_DEVICE_RESET, 0x3b6f);
NUM(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 0x3b70);
NUM(VFIO_IOMMU_GET_INFO, 0x3b70);
NUM(VFIO_DEVICE_PCI_HOT_RESET, 0x3b71);
NUM(VFIO_IOMMU_MAP_DMA, 0x3b71);
NUM(VFIO_DEVICE_QUERY_GFX_PLANE, 0x3b72);
NUM(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
NUM(VFIO_DEVICE_GET_GFX_DMABUF, 0x3b73);
NUM(VFIO_IOMMU_ENABLE, 0x3b73);
NUM(VFIO_DEVICE_IOEVENTFD, 0x3b74);
NUM(VFIO_IOMMU_DISABLE, 0x3b74);
NUM(VFIO_DEVICE_FEATURE, 0x3b75);
NUM(VFIO_IOMMU_DIRTY_PAGES, 0x3b75);
NUM(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
NUM(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
NUM(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);
NUM(VFIO_MIG_GET_PRECOPY_INFO, 0x3b79);
NUM(VFIO_EEH_PE_OP, 0x3b79);
NUM(VFIO_IOMMU_SPAPR_TCE_GET_INFO, 0x3b70);
NUM(VFIO_IOMMU_SPAPR_REGISTER_MEMORY, 0x3b75);
NUM(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, 0x3b76);
NUM(VFIO_IOMMU_SPAPR_TCE_CREATE, 0x3b77);
NUM(VFIO_IOMMU_SPAPR_TCE_REMOVE, 0x3b78);
NUM(VFIO_DEVICE_STATE_IS_ERROR(VFIO_DEVICE_STATE_SET_ERROR(0)), 1);
NUM(VFIO_DEVICE_STATE_VALID(VFIO_DEVICE_STATE_V1_RESUMING), 1);

NUM(VFIO_TYPE1_IOMMU, 1);
NUM(VFIO_SPAPR_TCE_IOMMU, 2);
NUM(VFIO_TYPE1v2_IOMMU, 3);
NUM(VFIO_DMA_CC_IOMMU, 4);
NUM(VFIO_EEH, 5);
NUM(__VFIO_RESERVED_TYPE1_NESTING_IOMMU, 6);
NUM(VFIO_SPAPR_TCE_v2_IOMMU, 7);
NUM(VFIO_NOIOMMU_IOMMU, 8);
NUM(VFIO_UNMAP_ALL, 9);
NUM(VFIO_UPDATE_VADDR, 10);

NUM(VFIO_GROUP_FLAGS_VIABLE, 1);
NUM(VFIO_GROUP_FLAGS_CONTAINER_SET, 2);
NUM(VFIO_DEVICE_FLAGS_RESET, 1 << 0);
NUM(VFIO_DEVICE_FLAGS_PCI, 1 << 1);
NUM(VFIO_DEVICE_FLAGS_PLATFORM, 1 << 2);
NUM(VFIO_DEVICE_FLAGS_AMBA, 1 << 3);
NUM(VFIO_DEVICE_FLAGS_CCW, 1 << 4);
NUM(VFIO_DEVICE_FLAGS_AP, 1 << 5);
NUM(VFIO_DEVICE_FLAGS_FSL_MC, 1 << 6);
NUM(VFIO_DEVICE_FLAGS_CAPS, 1 << 7);
NUM(VFIO_DEVICE_FLAGS_CDX, 1 << 8);
NUM(VFIO_DEVICE_INFO_CAP_ZPCI_BASE, 1);
NUM(VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP, 5);
NUM(VFIO_REGION_INFO_FLAG_READ, 1);
NUM(VFIO_REGION_INFO_FLAG_WRITE, 2);
NUM(VFIO_REGION_INFO_FLAG_MMAP, 4);
NUM(VFIO_REGION_INFO_FLAG_CAPS, 8);
NUM(VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1);
NUM(VFIO_REGION_INFO_CAP_TYPE, 2);
NUM(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 3);
NUM(VFIO_IRQ_INFO_EVENTFD, 1);
NUM(VFIO_IRQ_INFO_MASKABLE, 2);
NUM(VFIO_IRQ_INFO_AUTOMASKED, 4);
NUM(VFIO_IRQ_INFO_NORESIZE, 8);
NUM(VFIO_IRQ_SET_DATA_NONE, 1);
NUM(VFIO_IRQ_SET_DATA_BOOL, 2);
NUM(VFIO_IRQ_SET_DATA_EVENTFD, 4);
NUM(VFIO_IRQ_SET_ACTION_MASK, 8);
NUM(VFIO_IRQ_SET_ACTION_UNMASK, 0x10);
NUM(VFIO_IRQ_SET_ACTION_TRIGGER, 0x20);
NUM(VFIO_PCI_BAR0_REGION_INDEX, 0);
NUM(VFIO_PCI_BAR5_REGION_INDEX, 5);
NUM(VFIO_PCI_ROM_REGION_INDEX, 6);
NUM(VFIO_PCI_CONFIG_REGION_INDEX, 7);
NUM(VFIO_PCI_VGA_REGION_INDEX, 8);
NUM(VFIO_PCI_NUM_REGIONS, 9);
NUM(VFIO_PCI_INTX_IRQ_INDEX, 0);
NUM(VFIO_PCI_MSI_IRQ_INDEX, 1);
NUM(VFIO_PCI_MSIX_IRQ_INDEX, 2);
NUM(VFIO_PCI_ERR_IRQ_INDEX, 3);
NUM(VFIO_PCI_REQ_IRQ_INDEX, 4);
NUM(VFIO_PCI_NUM_IRQS, 5);
NUM(VFIO_PCI_HOT_RESET_FLAG_DEV_ID, 1);
NUM(VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, 2);
NUM(VFIO_DEVICE_FEATURE_MASK, 0xffff);
NUM(VFIO_DEVICE_FEATURE_GET, 1 << 16);
NUM(VFIO_DEVICE_FEATURE_SET, 1 << 17);
NUM(VFIO_DEVICE_FEATURE_PROBE, 1 << 18);
NUM(VFIO_DEVICE_BIND_FLAG_TOKEN, 1);
NUM(VFIO_DEVICE_ATTACH_PASID, 1);
NUM(VFIO_DEVICE_DETACH_PASID, 1);
NUM(VFIO_IOMMU_INFO_PGSIZES, 1);
NUM(VFIO_IOMMU_INFO_CAPS, 2);
NUM(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1);
NUM(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 2);
NUM(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 3);
NUM(VFIO_DMA_MAP_FLAG_READ, 1);
NUM(VFIO_DMA_MAP_FLAG_WRITE, 2);
NUM(VFIO_DMA_MAP_FLAG_VADDR, 4);
NUM(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, 1);
NUM(VFIO_DMA_UNMAP_FLAG_ALL, 2);
NUM(VFIO_DMA_UNMAP_FLAG_VADDR, 4);

/* The header this file got must be ours, not the older system copy. */
#ifndef VFIO_DEVICE_BIND_IOMMUFD
#error "linux/vfio.h is not include/linux/vfio.h"
#endif

/* ------------------------------------------------------------------------ */

TEST(iommufd_numbers)
{
	static const unsigned long nums[] = {
		IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS,
		IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP,
		IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_VFIO_IOAS,
		IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO,
		IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP,
		IOMMU_HWPT_INVALIDATE, IOMMU_FAULT_QUEUE_ALLOC,
		IOMMU_IOAS_MAP_FILE, IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC,
		IOMMU_IOAS_CHANGE_PROCESS, IOMMU_VEVENTQ_ALLOC,
		IOMMU_HW_QUEUE_ALLOC, IOMMU_IOAS_NOIOMMU_GET_PA,
	};
	unsigned long i;

	/* Dense from 0x80, direction and size bits all clear. */
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		CHECK_EQ(nums[i], 0x3b80 + i);
}

TEST(vfio_numbers)
{
	CHECK_EQ(VFIO_GET_API_VERSION, 0x3b64);
	CHECK_EQ(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
	CHECK_EQ(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
	CHECK_EQ(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);
	CHECK_EQ(_IOC_DIR(VFIO_DEVICE_BIND_IOMMUFD), 0);
	CHECK_EQ(_IOC_SIZE(VFIO_DEVICE_BIND_IOMMUFD), 0);
}

TEST(struct_sizes)
{
	/* Also checked at compile time above; repeated so a run shows it. */
	CHECK_EQ(sizeof(struct iommu_hw_info), 40);
	CHECK_EQ(offsetof(struct iommu_hw_info, out_capabilities), 32);
	CHECK_EQ(sizeof(struct iommu_hwpt_alloc), 48);
	CHECK_EQ(sizeof(struct iommu_ioas_noiommu_get_pa), 40);
	CHECK_EQ(sizeof(struct vfio_device_bind_iommufd), 24);
	CHECK_EQ(sizeof(struct vfio_device_attach_iommufd_pt), 16);
	CHECK_EQ(sizeof(struct vfio_iommu_type1_info), 24);
}

int main(void)
{
	h_init();
	RUN(iommufd_numbers);
	RUN(vfio_numbers);
	RUN(struct_sizes);
	return h_done();
}
